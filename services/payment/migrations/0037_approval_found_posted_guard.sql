-- approval_found_posted (0034) in a rollout: an older replica gives an approval's claim up by clearing
-- approval_receipt alone, leaving the found-posted mark behind; a later claim by an older replica keeps
-- it, and a newer replica resuming that claim would take its release as posted already: it would post
-- nothing and leave the held money unreleased. With no approval claimed there is nothing found posted,
-- whoever writes the row: the trigger clears the mark wherever a statement clears the claim. It fires
-- only on statements naming approval_receipt (the review's, never a tip's hot path).
CREATE FUNCTION approval_found_posted_cleared() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.approval_found_posted := NULL;
  RETURN NEW;
END $$;

CREATE TRIGGER tips_approval_found_posted_cleared BEFORE UPDATE OF approval_receipt ON tips FOR EACH ROW
  WHEN (NEW.approval_receipt IS NULL AND NEW.approval_found_posted IS NOT NULL) EXECUTE FUNCTION approval_found_posted_cleared();

-- Its values limited to what a claim records. NOT VALID: added without reading the table (a brief lock);
-- the marks left behind already are cleared, and the rows checked, by the next file, without holding writers.
ALTER TABLE tips ADD CONSTRAINT tips_approval_found_posted_values
  CHECK (approval_found_posted IN ('plain', 'refunded', 'paid_elsewhere')) NOT VALID;
