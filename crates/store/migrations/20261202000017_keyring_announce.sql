-- The keyring row is cached like a credential (issue 10, section 1; crates/store/src/auth_cache.rs).
--
-- Every read of a sealed value needs its environment's `environment_keys` row: which data key
-- version seals, and the lowest version that may still open. Nodes now keep it in the same
-- short-lived cache as sessions and memberships, so it must be announced the same way: a
-- rotation (active_version), a KEK change (kek) or retiring old versions (min_decrypt_version)
-- tells every node to forget the environment's entries at commit. The node that made the
-- change forgets at once (TenantTx::invalidate); the time to live bounds the rest.

CREATE TRIGGER environment_keys_announce AFTER UPDATE OR DELETE ON environment_keys
    FOR EACH ROW EXECUTE FUNCTION portcullis.announce_credential_change('environment');
