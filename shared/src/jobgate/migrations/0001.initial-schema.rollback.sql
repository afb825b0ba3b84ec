DROP TABLE IF EXISTS workers, outbox, job_logs, job_items, jobs, api_keys, refresh_tokens, users;
