-- A corp's alarms, one row per cause. Until 0019 they shared one column
-- (`corp_state.alarm`), so a later alarm hid an earlier one (a media IP alarm
-- over a quarantined record) and clearing one cleared both (the stall
-- watchdog's recovery wiped a quarantine alarm). Each kind is now raised and
-- cleared only by its own cause; `corp_state.alarm` stays as their summary
-- (kinds in a fixed order, joined by " | "), rewritten under the corp's state
-- row lock whenever one changes, so readers of the column see every alarm.
CREATE TABLE IF NOT EXISTS corp_alarms (
    corpid VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    alarm VARCHAR(1024) NOT NULL,
    raised_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (corpid, kind)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The alarm a corp carries now, under the kind its text names.
INSERT IGNORE INTO corp_alarms (corpid, kind, alarm)
SELECT corpid,
       CASE WHEN alarm LIKE 'media:%' THEN 'media'
            WHEN alarm LIKE 'setup: %' THEN 'setup'
            WHEN alarm LIKE 'no successful pull for %' THEN 'stall'
            ELSE 'records' END,
       alarm
FROM corp_state WHERE alarm <> '';
