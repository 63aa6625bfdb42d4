-- The intelligence log's content is customer content (issue 14, section 7; controls L1, E2):
-- prompt and output are sealed under the environment's data key like document bodies, and
-- each row records the provider, the cache tokens and the provider's own request id.
--
-- Expand step: `input` and `output` (plain jsonb) stay, nullable, so rows written before
-- this migration keep reading; nothing released wrote them outside tests. The NOT VALID check
-- leaves those rows alone and refuses plaintext content (prompt, output, reasoning excerpt) in
-- every row written from now on: the database itself keeps prompts out of the clear. The
-- reasoning excerpt, when the agent kernel records one, is sealed with the output.
--
-- The sealed columns are never re-encrypted: the table is append-only (L2) and each row's
-- audit commitment covers its ciphertext. A row opens as long as its data-key version is
-- not retired (see ARCHITECTURE.md, "intelligence log").

ALTER TABLE intelligence_log ALTER COLUMN input DROP NOT NULL;
ALTER TABLE intelligence_log
    ADD COLUMN provider               text,
    ADD COLUMN cache_creation_tokens  integer NOT NULL DEFAULT 0 CHECK (cache_creation_tokens >= 0),
    ADD COLUMN cache_read_tokens      integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    ADD COLUMN upstream_request_id    text CHECK (length(upstream_request_id) <= 200),
    ADD COLUMN input_ciphertext       bytea,
    ADD COLUMN output_ciphertext      bytea,
    ADD COLUMN content_key_version    integer CHECK (content_key_version >= 1);

ALTER TABLE intelligence_log ADD CONSTRAINT intelligence_log_content_sealed
    CHECK (input IS NULL AND output IS NULL AND reasoning_excerpt IS NULL
           AND input_ciphertext IS NOT NULL AND content_key_version IS NOT NULL
           AND provider IS NOT NULL) NOT VALID;
