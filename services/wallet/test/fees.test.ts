import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { FeeScheduleSchema, PaymentRail, TariffBandSchema } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { b2cFee, CARD_FEE_BPS_MAX, cardFee, mulDivRound, platformFee, quoteTip } from "@ttip/runtime";
import { FixedRateSource } from "../src/fx.js";
import { convertMinor } from "../src/money.js";

// The seeded KES schedule: 5% (min KES 1, cap KES 500), Safaricom's B2C bands, card 2.9%.
const band = (min: number, max: number, fee: number) => create(TariffBandSchema, { minMinor: BigInt(min), maxMinor: BigInt(max), feeMinor: BigInt(fee) });
const KES = create(FeeScheduleSchema, {
  version: 1,
  currency: "KES",
  platformFeeBps: 500,
  platformFeeMinMinor: 100n,
  platformFeeCapMinor: 50_000n,
  mpesaB2cBands: [band(100, 10_000, 0), band(10_001, 150_000, 500), band(150_001, 500_000, 900), band(500_001, 1_500_000, 1100), band(1_500_001, 25_000_000, 1200)],
  cardFeeBps: 290,
  cardFeeFixedMinor: 0n,
});
const USD = create(FeeScheduleSchema, { ...KES, currency: "USD", platformFeeMinMinor: 10n, platformFeeCapMinor: 5_000n, mpesaB2cBands: [], cardFeeFixedMinor: 30n });

test("rounding is half away from zero, exactly, in integers", () => {
  assert.equal(mulDivRound(250n, 1n, 100n), 3n); // 2.5 -> 3
  assert.equal(mulDivRound(249n, 1n, 100n), 2n);
  assert.equal(mulDivRound(-250n, 1n, 100n), -3n);
  assert.equal(mulDivRound(9_007_199_254_740_993n, 1n, 1n), 9_007_199_254_740_993n, "beyond float precision");
});

test("platform fee: percentage, then the minimum and the cap", () => {
  assert.equal(platformFee(KES, 1_000n), 100n, "5% of KES 10.00 is 0.50, raised to the KES 1 minimum");
  assert.equal(platformFee(KES, 10_000n), 500n);
  assert.equal(platformFee(KES, 10_010n), 501n, "500.5 rounds half up");
  assert.equal(platformFee(KES, 1_000_000n), 50_000n, "exactly at the cap");
  assert.equal(platformFee(KES, 1_000_020n), 50_000n, "over the cap");
  assert.equal(platformFee(KES, 50n), 50n, "never more than the tip itself");
});

test("B2C tariff: band edges are inclusive on both sides", () => {
  assert.equal(b2cFee(KES, 100n), 0n);
  assert.equal(b2cFee(KES, 10_000n), 0n, "KES 100 is free");
  assert.equal(b2cFee(KES, 10_001n), 500n);
  assert.equal(b2cFee(KES, 150_000n), 500n, "KES 1,500 still 5");
  assert.equal(b2cFee(KES, 150_100n), 900n, "KES 1,501 is 9");
  assert.equal(b2cFee(KES, 1_500_000n), 1100n);
  assert.equal(b2cFee(KES, 25_000_000n), 1200n);
  assert.throws(() => b2cFee(KES, 25_000_100n), /amount: no M-Pesa B2C fee band covers KES 250,001: payouts are KES 1 to KES 250,000/);
  assert.throws(() => b2cFee(KES, 99n));
});

test("M-Pesa quote: fees in whole shillings in the worker's favour; with and without the customer covering", () => {
  const q = quoteTip(KES, 15_000n, PaymentRail.MPESA, false); // KES 150: 5% = 7.50 -> 7
  assert.equal(q.platformFee!.amountMinor, 700n);
  assert.equal(q.processingFee!.amountMinor, 0n);
  assert.equal(q.customerPays!.amountMinor, 15_000n);
  assert.equal(q.workerReceives!.amountMinor, 14_300n);
  const covered = quoteTip(KES, 15_000n, PaymentRail.MPESA, true);
  assert.equal(covered.customerPays!.amountMinor, 15_700n);
  assert.equal(covered.workerReceives!.amountMinor, 15_000n);
  assert.equal(covered.feeScheduleVersion, 1);
});

test("card quote: when the customer covers, the card fee on the larger charge is covered too", () => {
  const q = quoteTip(USD, 1_000n, PaymentRail.CARD, false); // $10.00
  assert.equal(q.platformFee!.amountMinor, 50n);
  assert.equal(q.processingFee!.amountMinor, cardFee(USD, 1_000n));
  assert.equal(q.processingFee!.amountMinor, 59n); // 29 + 30
  assert.equal(q.workerReceives!.amountMinor, 1_000n - 50n - 59n);
  const c = quoteTip(USD, 1_000n, PaymentRail.CARD, true);
  const pays = c.customerPays!.amountMinor;
  assert.equal(c.processingFee!.amountMinor, cardFee(USD, pays));
  assert.equal(pays - c.processingFee!.amountMinor - c.platformFee!.amountMinor, 1_000n, "what is left is exactly the tip");
  assert.ok(c.platformFee!.amountMinor >= 50n && c.platformFee!.amountMinor <= 51n);
  assert.equal(c.workerReceives!.amountMinor, 1_000n);
});

test("card quote at the highest card fee a schedule may set: the customer's charge still covers the tip", () => {
  const steep = create(FeeScheduleSchema, { ...USD, cardFeeBps: CARD_FEE_BPS_MAX });
  const c = quoteTip(steep, 1_000n, PaymentRail.CARD, true);
  const pays = c.customerPays!.amountMinor;
  assert.equal(pays - cardFee(steep, pays) - c.platformFee!.amountMinor, 1_000n);
  // Over it (a schedule stored before the limit) it still quotes; a fee of the whole charge stops with an assertion
  // instead of looping for ever.
  for (const bps of [2_500, 9_990]) {
    const stored = create(FeeScheduleSchema, { ...USD, cardFeeBps: bps });
    const q = quoteTip(stored, 1_000n, PaymentRail.CARD, true);
    const charged = q.customerPays!.amountMinor;
    assert.equal(charged - cardFee(stored, charged) - q.platformFee!.amountMinor, 1_000n, `${bps} bps`);
  }
  assert.throws(() => quoteTip(create(FeeScheduleSchema, { ...USD, cardFeeBps: 10_000 }), 1_000n, PaymentRail.CARD, true), /a card fee of 10000 bps leaves nothing of the charge/);
});

test("a tip too small for its fees is refused", () => {
  assert.throws(() => quoteTip(USD, 40n, PaymentRail.CARD, false), /does not cover its fees/);
});

test("FX: rates crossed through KES, conversion rounded to the target's minor unit", async () => {
  const rates = new FixedRateSource("USD=129.20,EUR=140.10");
  const usdKes = await rates.rate("USD", "KES");
  assert.equal(usdKes.rate, "129.20000000");
  assert.equal(convertMinor(1_000n, "USD", "KES", usdKes.rate), 129_200n);
  assert.equal(convertMinor(1n, "USD", "KES", "129.205"), 129n, "1.29205 -> 1.29 (minor units)");
  const kesUsd = await rates.rate("KES", "USD");
  assert.equal(kesUsd.rate, "0.00773994");
  assert.equal(convertMinor(129_200n, "KES", "USD", kesUsd.rate), 1_000n);
  assert.equal((await rates.rate("EUR", "USD")).rate, "1.08436533");
  await assert.rejects(rates.rate("USD", "JPY"), /no exchange rate/);
});
