-- BigQuery Standard SQL. One row per user and event on @ds; a user with no event that day
-- keeps one row with NULL event fields, so dormant users still reach the features step.
SELECT
  u.user_id,
  u.platform,
  u.country,
  DATE_DIFF(@ds, u.signup_date, DAY) AS tenure_days,
  e.session_id,
  e.event_type,
  e.recipe_id,
  e.duration_s,
  e.event_ts
FROM `app.users` AS u
LEFT JOIN `app.recipe_events` AS e
  ON e.user_id = u.user_id
  AND e.event_date = @ds
WHERE u.signup_date <= @ds
