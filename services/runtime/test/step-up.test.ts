import assert from "node:assert/strict";
import { test } from "node:test";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { needsStepUp, stepUpProblem, STEP_UP_MAX_AGE_SECONDS } from "../src/step-up.js";

test("step-up: read from the contracts, not from a list kept here", () => {
  assert.equal(needsStepUp(PaymentAdminService.method.reviewTip), true, "service-level step_up");
  assert.equal(needsStepUp(PaymentAdminService.method.releasePayouts), true);
  assert.equal(needsStepUp(WalletAdminService.method.reverseEntry), true, "RPC-level step_up");
  assert.equal(needsStepUp(PaymentAdminService.method.listFraudAlerts), false, "a read overrides the service's declaration");
  assert.equal(needsStepUp(PaymentAdminService.method.holdPayouts), false);
});

test("step-up: fresh within the bound, refused with the reason otherwise", () => {
  const now = 1_800_000_000_000;
  const at = (s: number) => String(now / 1000 - s);
  assert.equal(stepUpProblem(at(0), now), undefined);
  assert.equal(stepUpProblem(at(STEP_UP_MAX_AGE_SECONDS), now), undefined);
  assert.match(stepUpProblem(null, now)!, /carries no device step-up/);
  assert.match(stepUpProblem(at(STEP_UP_MAX_AGE_SECONDS + 1), now)!, /61 s old/);
  assert.match(stepUpProblem(at(-120), now)!, /-120 s old/);
  assert.match(stepUpProblem("soon", now)!, /unix seconds/);
});
