-- Parallel ranges of one large media download (issue #16). A file at least
-- media_parallel_min_mib large is fetched as several concurrent GetMediaData
-- streams, each over its own byte range, written in place into the .part file.
-- One row per range a stream has started:
--   range_start / range_end: the range, [start, end) in file offsets (the
--   ciphertext offsets of the SDK's Range index; they equal plaintext offsets,
--   AES-128-ECB keeps lengths and only the last chunk carries padding).
--   done_to: bytes [range_start, done_to) are fsynced in the .part file; a
--   range with done_to = range_end is finished and never fetched again.
-- Rows are written only while the job's claim is held and removed when the
-- file is placed or discarded.
CREATE TABLE IF NOT EXISTS media_ranges (
    job_id BIGINT UNSIGNED NOT NULL,
    range_start BIGINT UNSIGNED NOT NULL,
    range_end BIGINT UNSIGNED NOT NULL,
    done_to BIGINT UNSIGNED NOT NULL,
    updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (job_id, range_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
