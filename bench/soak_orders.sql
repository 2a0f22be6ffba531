-- soak_orders.sql (pgbench, bench/soak.sh): the orders writer. Three transactions in four insert an
-- order placed now for a random customer and rep; the fourth changes the status, amount and rep of a
-- random order of the whole history (its day and month, and its customer, become stale).
\set customer random(1, :customers)
\set rep random(1, :reps)
\set cents random(100, 250000)
\set status random(1, 6)
\set what random(1, 4)
\if :what <= 3
INSERT INTO crm.orders (customer_id, rep_id, status, amount, ordered_at)
VALUES (:customer, :rep, (ARRAY['completed', 'completed', 'completed', 'completed', 'refunded', 'cancelled'])[:status],
        :cents / 100.0, now());
\else
\set order random(1, :orders)
UPDATE crm.orders SET status = (ARRAY['completed', 'completed', 'completed', 'completed', 'refunded', 'cancelled'])[:status],
                      amount = :cents / 100.0, rep_id = :rep
WHERE order_id = (SELECT order_id FROM crm.orders WHERE order_id >= :order ORDER BY order_id LIMIT 1);
\endif
