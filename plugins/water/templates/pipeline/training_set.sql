-- Trino SQL for Athena; the one parameter (?) is ds. Every user is scored; labelled users
-- are split 80/20 into train and validation by user id, so a user stays on one side.
SELECT
  f.user_id,
  f.platform,
  f.tenure_days,
  f.n_events,
  f.n_sessions,
  f.n_views,
  f.n_saves,
  f.n_cooks,
  f.n_searches,
  f.n_shares,
  f.n_recipes,
  f.total_duration_s,
  f.cook_rate,
  f.save_rate,
  l.segment AS label,
  CASE
    WHEN l.segment IS NULL THEN 'unlabelled'
    WHEN f.user_id % 5 = 0 THEN 'validation'
    ELSE 'train'
  END AS split
FROM features AS f
LEFT JOIN engagement_labels AS l
  ON l.user_id = f.user_id
  AND l.ds = f.ds
WHERE f.ds = ?
