-- The number of the account that accepted a staff invitation (254XXXXXXXXX), kept when it is not the invited one:
-- a link is accepted from any account (a worker's other SIM), and the managers see who joined. NULL: the same, or
-- accepted before this column.
ALTER TABLE members ADD COLUMN accepted_phone text;
