-- Trino SQL for Athena; the one parameter (?) is ds. Every customer is scored; labelled
-- customers are split 80/20 into train and validation by the number in their key
-- (C-000123 -> 123), so a customer stays on one side every day.
SELECT
  f.customer_key,
  f.is_web,
  f.is_app,
  f.is_marketplace,
  f.tenure_days,
  f.orders_28d,
  f.orders_7d,
  f.amount_28d,
  f.max_amount_28d,
  f.items_28d,
  f.categories_28d,
  f.avg_order_value,
  f.items_per_order,
  f.recency_days,
  l.value_class AS label,
  CASE
    WHEN l.value_class IS NULL THEN 'unlabelled'
    WHEN CAST(regexp_extract(f.customer_key, '[0-9]+') AS BIGINT) % 5 = 0 THEN 'validation'
    ELSE 'train'
  END AS split
FROM features AS f
LEFT JOIN value_labels AS l
  ON l.customer_key = f.customer_key
  AND l.ds = f.ds
WHERE f.ds = ?
