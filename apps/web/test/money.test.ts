// Money on every screen (the web app, the admin console, the phone app): each amount in the currency it
// came with, minor units by that currency's ISO 4217 exponent.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatAmount, formatMoney, minorExponent, parseUnits, parseWholeUnits, unitsText } from "../src/lib/money.js";

describe("formatMoney", () => {
  test("by the currency sent: two minor digits for KES and USD, none for UGX and JPY, three for BHD", () => {
    assert.equal(formatMoney(105_050n, "KES"), "KES 1,050.50");
    assert.equal(formatMoney(100_000n, "KES"), "KES 1,000");
    assert.equal(formatMoney(1_000n, "USD"), "USD 10");
    assert.equal(formatMoney(5_000n, "UGX"), "UGX 5,000", "UGX has no minor unit: 5,000 minor units are UGX 5,000, not 50");
    assert.equal(formatMoney(1_234n, "JPY"), "JPY 1,234");
    assert.equal(formatMoney(1_250n, "BHD"), "BHD 1.250");
    assert.equal(formatMoney(1_005n, "BHD"), "BHD 1.005");
    assert.deepEqual(["KES", "UGX", "BHD", "XYZ"].map(minorExponent), [2, 0, 3, 2]);
  });

  test("negative, zero and every digit written when asked (the admin console's figures)", () => {
    assert.equal(formatMoney(-150n, "KES"), "KES -1.50", "the code first, as the services' formatter writes it");
    assert.equal(formatMoney(-500n, "KES", true), "KES -5.00");
    assert.equal(formatMoney(0n, "KES"), "KES 0");
    assert.equal(formatMoney(2_000_000n, "KES", true), "KES 20,000.00");
    assert.equal(formatMoney(5_000n, "UGX", true), "UGX 5,000");
    assert.equal(unitsText(123_456_700n, "KES"), "1,234,567");
  });

  test("an amount in its own currency; a missing one is zero in the currency the screen asked for", () => {
    assert.equal(formatAmount({ amountMinor: 1_000n, currency: "USD" }, "KES"), "USD 10");
    assert.equal(formatAmount(undefined, "KES"), "KES 0");
    assert.equal(formatAmount({ amountMinor: 500n, currency: "" }, "KES"), "KES 5", "no currency sent: the one asked for, never a lost amount");
  });
});

describe("typed amounts", () => {
  test("commas (or spaces) only between groups of three: \"1,2,3\" is a typo, not 123", () => {
    for (const typo of ["1,2,3", "12,5", "1,0000", "1,000 000", ",100", "100,", "1 2"]) {
      assert.equal(parseUnits(typo, "KES"), undefined, typo);
      assert.equal(parseWholeUnits(typo), undefined, typo);
    }
    assert.equal(parseUnits("1,250.50", "KES"), 125_050n);
    assert.equal(parseUnits(" 12 500 ", "KES"), 1_250_000n);
    assert.equal(parseUnits("1234567", "KES"), 123_456_700n);
    assert.equal(parseWholeUnits("1,000"), 100_000n);
    assert.equal(parseWholeUnits("250"), 25_000n);
  });

  test("at most the currency's minor digits; nothing half-typed, signed or empty", () => {
    assert.equal(parseUnits("20.5", "USD"), 2_050n);
    assert.equal(parseUnits("1.250", "BHD"), 1_250n);
    assert.equal(parseUnits("5,000", "UGX"), 5_000n);
    for (const [text, currency] of [["20.505", "USD"], ["5.0", "UGX"], ["12.", "KES"], [".5", "KES"], ["-5", "KES"], ["", "KES"], ["1.2.3", "KES"], ["1e3", "KES"], ["1,000,000,000,000", "KES"]]) {
      assert.equal(parseUnits(text, currency), undefined, `${text} ${currency}`);
    }
    assert.equal(parseWholeUnits("50.5"), undefined, "M-Pesa moves whole shillings");
    assert.equal(parseWholeUnits("0"), undefined);
  });
});
