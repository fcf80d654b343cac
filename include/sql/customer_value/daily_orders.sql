-- BigQuery Standard SQL; @ds is a DATE query parameter. One row per customer signed up by
-- @ds, with their orders in the 28 days ending at @ds (zero-filled: a customer without an
-- order in the window keeps a row, so every customer is scored).
SELECT
  c.customer_key,
  c.country,
  c.channel,
  DATE_DIFF(@ds, c.signup_date, DAY) AS tenure_days,
  COUNT(o.order_id) AS orders_28d,
  COUNTIF(o.order_date > DATE_SUB(@ds, INTERVAL 7 DAY)) AS orders_7d,
  COALESCE(SUM(o.amount), 0) AS amount_28d,
  COALESCE(MAX(o.amount), 0) AS max_amount_28d,
  COALESCE(SUM(o.items), 0) AS items_28d,
  COUNT(DISTINCT o.category) AS categories_28d,
  DATE_DIFF(@ds, MAX(o.order_date), DAY) AS days_since_last_order
FROM `shop.customers` AS c
LEFT JOIN `shop.orders` AS o
  ON o.customer_key = c.customer_key
  AND o.order_date BETWEEN DATE_SUB(@ds, INTERVAL 27 DAY) AND @ds
WHERE c.signup_date <= @ds
GROUP BY c.customer_key, c.country, c.channel, c.signup_date
