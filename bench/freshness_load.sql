-- freshness_load.sql (pgbench): one single-row order insert per transaction, for a random customer.
\set customer random(1, :customers)
INSERT INTO crm.orders (customer_id, status, amount, ordered_at) VALUES (:customer, 'completed', 42.5, now());
