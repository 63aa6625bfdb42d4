\set e random(1, 64)
BEGIN;
INSERT INTO docs (env, title, body) VALUES (:e, 'title', repeat('x', 200));
SELECT seq, head, frontier FROM heads WHERE env = :e FOR UPDATE;
WITH x AS (INSERT INTO log (env, seq, action, after, prev, h) SELECT :e, seq + 1, 'doc.created', '{"title":"title","v":1}', head, sha256(head) FROM heads WHERE env = :e)
UPDATE heads SET seq = seq + 1, head = sha256(head), frontier = ARRAY[sha256(head), sha256(head), sha256(head)] WHERE env = :e;
COMMIT;
