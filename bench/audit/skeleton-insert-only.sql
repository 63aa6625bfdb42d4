\set e random(1, 64)
BEGIN;
INSERT INTO docs (env, title, body) VALUES (:e, 'title', repeat('x', 200));
INSERT INTO log2 (env, action, after) VALUES (:e, 'doc.created', '{"title":"title","v":1}');
COMMIT;
