-- How far the erasure of old deliveries' addresses and texts has gone (delivery.ts, eraseOldDeliveries): the id of
-- the last delivery erased (ids are time-ordered), so that each sweep starts after it rather than reading every
-- delivery erased before again.
CREATE TABLE erasure_marks (
  name    text PRIMARY KEY,
  through uuid NOT NULL
);
