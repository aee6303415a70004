-- A job handed back by a stopping worker keeps its attempt number (each run's log lines are its
-- own attempt's) and counts the hand-back here instead, so the retry policy does not count it.
ALTER TABLE jobs ADD COLUMN handed_back integer NOT NULL DEFAULT 0 CHECK (handed_back >= 0);
