-- kpi_pgbench.sql: pgbench script of part 2: one completed order of a random customer, placed now.
\set customer random(1, :customers)
INSERT INTO crm.orders (customer_id, status, amount, ordered_at) VALUES (:customer, 'completed', 42.50, now());
