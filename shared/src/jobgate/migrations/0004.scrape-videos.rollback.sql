DROP TABLE IF EXISTS job_videos, videos;
