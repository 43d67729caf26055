-- The inbox's retention (InboxRetention) deletes rows by their age: without this index each sweep
-- would read the whole inbox to find none. It costs each applied event one more index entry.
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);
