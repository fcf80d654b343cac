-- Trino SQL for Athena; the one parameter (?) is ds. The model's features per customer,
-- from the day's partition of orders_daily: channel flags, order counts and spend over the
-- window, per-order ratios and the days since the last order (28 when none in the window).
SELECT
  customer_key,
  country,
  CASE WHEN channel = 'web' THEN 1 ELSE 0 END AS is_web,
  CASE WHEN channel = 'app' THEN 1 ELSE 0 END AS is_app,
  CASE WHEN channel = 'marketplace' THEN 1 ELSE 0 END AS is_marketplace,
  tenure_days,
  orders_28d,
  orders_7d,
  CAST(amount_28d AS DOUBLE) AS amount_28d,
  CAST(max_amount_28d AS DOUBLE) AS max_amount_28d,
  items_28d,
  categories_28d,
  CASE WHEN orders_28d > 0 THEN CAST(amount_28d AS DOUBLE) / orders_28d ELSE 0.0 END AS avg_order_value,
  CASE WHEN orders_28d > 0 THEN CAST(items_28d AS DOUBLE) / orders_28d ELSE 0.0 END AS items_per_order,
  COALESCE(days_since_last_order, 28) AS recency_days
FROM orders_daily
WHERE ds = ?
