// A distribution's notes in the screen's words, from the service's fields: an amount a note carries is shown as money.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { DistributionNoteKind, DistributionNoteSchema } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { noteText } from "../src/app/v/share-words.js";
import { venueT } from "../src/lib/venue-i18n.js";

test("a pool that owes is said with what it owes and what to do, in English and Swahili", () => {
  const note = create(DistributionNoteSchema, { kind: DistributionNoteKind.POOL_OWES, amount: { amountMinor: 150_050n, currency: "KES" } });
  assert.equal(noteText(venueT("en"), note), "The pool owes KES 1,500.50 from refunds or chargebacks after earlier splits, so this period cannot be split: choose a period that also covers them.");
  assert.match(noteText(venueT("sw"), note), /^Mfuko unadaiwa KES 1,500\.50 kwa marejesho/);
});
