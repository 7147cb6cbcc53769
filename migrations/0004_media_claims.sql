-- Media workers: claims, verification retries and the voice transcode.
--   claimed_by / claim_token / claimed_until: who downloads a job now. A worker
--   claims a job with a conditional UPDATE (pending, or downloading with an expired
--   claim) and every progress write is conditioned on its claim_token, so a worker
--   whose claim was taken over can no longer move the job. claimed_until is renewed
--   with every chunk; a crashed worker's job becomes claimable when it passes.
--   verify_failures: downloads discarded because size or md5 did not match (after 3
--   the job is `corrupt`).
--   transcode: '' (not a voice, or not yet), done | failed | unavailable (no ffmpeg).
--   chunks: GetMediaData chunks recorded with progress writes (all attempts; the final
--   batch of a download is recorded by its completion and not counted here).
--   attempts (0003) counts failed attempts: at MediaOptions::max_attempts the job is `failed`.
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS claimed_by VARCHAR(255) NOT NULL DEFAULT '';
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS claim_token BIGINT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS claimed_until DATETIME(3) NULL;
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS verify_failures INT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS transcode VARCHAR(16) NOT NULL DEFAULT '';
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS chunks INT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE media_jobs ADD COLUMN IF NOT EXISTS finished_at DATETIME(3) NULL;
