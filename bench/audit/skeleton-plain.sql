\set e random(1, 64)
BEGIN;
INSERT INTO docs (env, title, body) VALUES (:e, 'title', repeat('x', 200));
COMMIT;
