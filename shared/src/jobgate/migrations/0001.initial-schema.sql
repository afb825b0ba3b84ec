-- Jobgate initial schema: identities (auth-service), jobs and their items, outbox, workers.
-- PostgreSQL is the source of truth for job state; RabbitMQ only carries work.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('admin', 'user')),
    scopes        text[] NOT NULL DEFAULT '{}',
    is_active     boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    prefix       text NOT NULL,
    key_hash     text NOT NULL UNIQUE,
    scopes       text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_prefix ON api_keys (prefix);

CREATE TABLE jobs (
    id               uuid PRIMARY KEY,
    kind             text NOT NULL,
    owner_id         uuid NOT NULL REFERENCES users (id),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'retrying', 'completed', 'failed', 'cancelled')),
    params           jsonb NOT NULL DEFAULT '{}',
    priority         smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 9),
    attempt          integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    backoff          text NOT NULL DEFAULT 'exponential' CHECK (backoff IN ('fixed', 'exponential')),
    backoff_seconds  double precision NOT NULL DEFAULT 2,
    idempotency_key  text,
    request_id       text,
    items_total      integer NOT NULL DEFAULT 0,
    items_done       integer NOT NULL DEFAULT 0,
    items_failed     integer NOT NULL DEFAULT 0,
    bytes_total      bigint NOT NULL DEFAULT 0,
    bytes_done       bigint NOT NULL DEFAULT 0,
    current_item     text,
    throughput_bps   double precision,
    throughput_at    timestamptz,
    error            text,
    result           jsonb,
    cancel_requested boolean NOT NULL DEFAULT false,
    worker_id        text,
    lease_expires_at timestamptz,
    next_attempt_at  timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_owner_idempotency ON jobs (owner_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_owner_created ON jobs (owner_id, created_at DESC);
CREATE INDEX jobs_kind_created ON jobs (kind, created_at DESC);
CREATE INDEX jobs_active ON jobs (status, lease_expires_at) WHERE status IN ('pending', 'running', 'retrying');

-- One row per unit of work of a job (a file of a cache job): lets a resumed job skip done work.
CREATE TABLE job_items (
    job_id uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq    integer NOT NULL,
    path   text NOT NULL,
    size   bigint NOT NULL DEFAULT 0,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
    error  text,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_logs (
    id      bigserial PRIMARY KEY,
    job_id  uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    ts      timestamptz NOT NULL DEFAULT now(),
    level   text NOT NULL,
    message text NOT NULL
);
CREATE INDEX job_logs_job ON job_logs (job_id, id);

-- Transactional outbox: written with the state change, deleted once the broker confirmed it.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    exchange    text NOT NULL,
    routing_key text NOT NULL,
    body        jsonb NOT NULL,
    properties  jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);

CREATE TABLE workers (
    id                text PRIMARY KEY,
    kind              text NOT NULL,
    hostname          text NOT NULL,
    pid               integer NOT NULL,
    status            text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'busy', 'stopping', 'stopped')),
    current_job_id    uuid,
    jobs_completed    bigint NOT NULL DEFAULT 0,
    jobs_failed       bigint NOT NULL DEFAULT 0,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at        timestamptz
);
CREATE INDEX workers_kind_heartbeat ON workers (kind, last_heartbeat_at DESC);
