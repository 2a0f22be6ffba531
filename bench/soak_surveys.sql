-- soak_surveys.sql (pgbench, bench/soak.sh): the survey writer. Four transactions in five record an
-- NPS or CSAT response given now by a random customer; the fifth corrects the score of a random
-- response of the whole history.
\set customer random(1, :customers)
\set score random(0, 10)
\set what random(1, 5)
\if :what <= 4
\set nps random(0, 1)
INSERT INTO crm.survey_responses (customer_id, kind, score, answered_at)
VALUES (:customer, CASE WHEN :nps = 1 THEN 'nps' ELSE 'csat' END,
        CASE WHEN :nps = 1 THEN :score ELSE 1 + :score % 5 END, now());
\else
\set response random(1, :responses)
UPDATE crm.survey_responses SET score = CASE kind WHEN 'nps' THEN :score ELSE 1 + :score % 5 END
WHERE response_id = (SELECT response_id FROM crm.survey_responses WHERE response_id >= :response
                     ORDER BY response_id LIMIT 1);
\endif
