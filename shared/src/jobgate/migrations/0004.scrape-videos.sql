-- depends: 0003.job-items-keys
-- Scraped videos (seed 002): one row per owner and source video, whatever job met it.
-- A row is addressed by its uuid `id`; the API's `id` of a video is the source id
-- (`video_id`), unique per owner, so two users scraping one video get one row each.
-- `job_id` is the job that last stored or met the video; `job_videos` links every job
-- to every video it listed (`reused`: already stored when that job met it).

CREATE TABLE videos (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id          uuid NOT NULL REFERENCES users (id),
    video_id          text NOT NULL,
    job_id            uuid REFERENCES jobs (id) ON DELETE SET NULL,
    mode              text NOT NULL CHECK (mode IN ('profile', 'hashtag')),
    value             text NOT NULL,
    url               text,
    description       text,
    author_username   text,
    author_nickname   text,
    views             bigint,
    likes             bigint,
    comments          bigint,
    shares            bigint,
    created_at_tiktok timestamptz,
    hashtags          text[] NOT NULL DEFAULT '{}',
    music_title       text,
    has_watermark     boolean,
    file_size         bigint,
    duration          double precision,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'downloading', 'downloaded', 'uploading',
                                        'uploaded', 'failed')),
    error             text,
    video_file_id     uuid REFERENCES files (id) ON DELETE SET NULL,
    metadata_file_id  uuid REFERENCES files (id) ON DELETE SET NULL,
    folder_path       text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, video_id)
);
CREATE INDEX videos_owner_created ON videos (owner_id, created_at DESC);
CREATE INDEX videos_source ON videos (owner_id, mode, value);
CREATE INDEX videos_author ON videos (author_username);
CREATE INDEX videos_hashtags ON videos USING gin (hashtags);
CREATE INDEX videos_job ON videos (job_id) WHERE job_id IS NOT NULL;

COMMENT ON COLUMN videos.video_id IS 'the source''s id of the video (the API''s video id)';
COMMENT ON COLUMN videos.job_id IS 'the job that last stored or met the video';
COMMENT ON COLUMN videos.folder_path IS 'storage folder of its files: [<drive_folder_id>/]TikTok/<mode>/<value>/<YYYY>/<MM>';

CREATE TABLE job_videos (
    job_id    uuid NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    video_id  uuid NOT NULL REFERENCES videos (id) ON DELETE CASCADE,
    reused    boolean NOT NULL DEFAULT false,
    linked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, video_id)
);
CREATE INDEX job_videos_video ON job_videos (video_id);
COMMENT ON COLUMN job_videos.reused IS 'the video was already stored when this job met it (not downloaded again)';
