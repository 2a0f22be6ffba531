-- soak_tickets.sql (pgbench, bench/soak.sh): the tickets writer. Half the transactions open a ticket
-- now; the others answer and resolve one: one of the last 200 tickets (opened during the soak), or,
-- one time in four, a random ticket of the whole history.
\set customer random(1, :customers)
\set complaint random(1, 7)
\set what random(1, 8)
\if :what <= 4
INSERT INTO crm.tickets (customer_id, opened_at, replies, is_complaint)
VALUES (:customer, now(), 0, :complaint = 1);
\else
\if :what <= 7
\set back random(0, 199)
UPDATE crm.tickets SET first_response_at = coalesce(first_response_at, greatest(opened_at, now())),
                       resolved_at = greatest(opened_at, now()), replies = replies + 1
WHERE ticket_id = (SELECT max(ticket_id) FROM crm.tickets) - :back;
\else
\set ticket random(1, :tickets)
UPDATE crm.tickets SET first_response_at = coalesce(first_response_at, greatest(opened_at, now())),
                       resolved_at = coalesce(resolved_at, greatest(opened_at, now())), replies = replies + 1
WHERE ticket_id = (SELECT ticket_id FROM crm.tickets WHERE ticket_id >= :ticket ORDER BY ticket_id LIMIT 1);
\endif
\endif
