// The shared value types, table by table: each row is a case a service relies on.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  assertCurrency,
  decimalAmount,
  decodePageToken,
  decodeTimeIdToken,
  encodePageToken,
  fieldError,
  fieldErrors,
  formatMoney,
  keysetPage,
  keysetTime,
  maskPhone,
  minorDigits,
  MPESA_LIMITS,
  mpesaAmount,
  normalisePhone,
  pageSize,
  parseKenyanMobile,
  positionParts,
  requireKenyanMobile,
  violationsOf,
} from "../src/index.js";

/** The field errors `fn` throws, or a failure when it does not throw one. */
function problemsOf(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.code, Code.InvalidArgument);
    return violationsOf(err);
  }
  assert.fail("expected INVALID_ARGUMENT");
}

describe("money", () => {
  test("minor digits per ISO 4217, 2 for a currency the table does not know", () => {
    const rows: [string, number][] = [["KES", 2], ["USD", 2], ["UGX", 0], ["RWF", 0], ["TZS", 2], ["XXX", 2]];
    for (const [currency, digits] of rows) assert.equal(minorDigits(currency), digits, currency);
  });

  test("formatting: grouped for people, plain for machines, in the currency's own digits", () => {
    const rows: [bigint, string, string, string][] = [
      [0n, "KES", "KES 0", "0.00"],
      [5n, "KES", "KES 0.05", "0.05"],
      [125_000n, "KES", "KES 1,250", "1250.00"],
      [125_050n, "KES", "KES 1,250.50", "1250.50"],
      [-14_250n, "KES", "KES -142.50", "-142.50"],
      [25_000_000n, "KES", "KES 250,000", "250000.00"],
      [1_500n, "UGX", "UGX 1,500", "1500"],
      [1_234_567n, "RWF", "RWF 1,234,567", "1234567"],
    ];
    for (const [minor, currency, person, machine] of rows) {
      assert.equal(formatMoney(minor, currency), person);
      assert.equal(decimalAmount(minor, currency), machine);
    }
  });

  test("unsupported currencies are refused naming the field", () => {
    assert.doesNotThrow(() => assertCurrency("KES", "amount.currency"));
    assert.deepEqual(problemsOf(() => assertCurrency("JPY", "amount.currency")).map((p) => p.field), ["amount.currency"]);
  });

  test("M-Pesa: KES, whole shillings, KES 1 to KES 250,000 a transaction", () => {
    assert.equal(MPESA_LIMITS.perTransactionMinor, 25_000_000n);
    const ok: bigint[] = [100n, 25_000n, 25_000_000n];
    for (const amountMinor of ok) assert.equal(mpesaAmount({ amountMinor, currency: "KES" }, "amount"), amountMinor);
    const bad: [{ amountMinor: bigint; currency: string } | undefined, RegExp][] = [
      [undefined, /required/],
      [{ amountMinor: 10_000n, currency: "USD" }, /KES/],
      [{ amountMinor: 10_050n, currency: "KES" }, /whole shillings/],
      [{ amountMinor: 0n, currency: "KES" }, /at least KES 1/],
      [{ amountMinor: 25_000_100n, currency: "KES" }, /250,000/],
    ];
    for (const [money, why] of bad) {
      const [problem] = problemsOf(() => mpesaAmount(money, "amount"));
      assert.equal(problem.field, "amount");
      assert.match(problem.message, why);
    }
  });
});

describe("Kenyan phone numbers", () => {
  test("parse: every way people write a Kenyan mobile, and what is not one", () => {
    const rows: [string, string | undefined][] = [
      ["0712345678", "254712345678"],
      ["0112345678", "254112345678"],
      ["+254712345678", "254712345678"],
      ["254712345678", "254712345678"],
      ["0712 345 678", "254712345678"],
      ["+254-712-345-678", "254712345678"],
      ["0812345678", undefined],
      ["071234567", undefined],
      ["+14155550100", undefined],
      ["", undefined],
    ];
    for (const [input, want] of rows) assert.equal(parseKenyanMobile(input), want, input);
    assert.equal(problemsOf(() => requireKenyanMobile("12345", "phone"))[0].field, "phone");
  });

  test("normalise: Kenyan numbers get their country code, others keep their digits", () => {
    const rows: [string, string][] = [["0712345678", "254712345678"], ["+254712345678", "254712345678"], ["+1 (415) 555-0100", "14155550100"], ["447911123456", "447911123456"]];
    for (const [input, want] of rows) assert.equal(normalisePhone(input), want, input);
  });

  test("mask: the first four and last two digits, never a short number whole", () => {
    const rows: [string, string][] = [["254712345678", "2547******78"], ["0712345678", "2547******78"], ["+14155550100", "1415*****00"], ["123456", "******"], ["12", "**"]];
    for (const [input, want] of rows) assert.equal(maskPhone(input), want, input);
  });
});

describe("phone numbers as payment takes them (M-Pesa mobiles only)", () => {
  test("every way Kenyans write a mobile number becomes 254XXXXXXXXX", () => {
    for (const [input, want] of [
      ["0712345678", "254712345678"],
      ["0112345678", "254112345678"],
      ["+254712345678", "254712345678"],
      ["254712345678", "254712345678"],
      ["+254 712 345 678", "254712345678"],
      ["254110000001", "254110000001"],
    ]) assert.equal(requireKenyanMobile(input, "mpesa_phone"), want, input);
  });
  test("anything else is INVALID_ARGUMENT naming the field", () => {
    for (const bad of ["712345678", "0812345678", "+255712345678", "25471234567", "07123456789", "", "0712-34567x"]) {
      assert.throws(() => requireKenyanMobile(bad, "mpesa_phone"), (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && /mpesa_phone/.test(e.message), bad);
    }
  });
  test("masking keeps the prefix and the last two digits only", () => {
    assert.equal(maskPhone("254712345678"), "2547******78");
  });
});

describe("keyset pages (page.proto)", () => {
  test("size: 0 is 50, at most 500", () => {
    const rows: [number | undefined, number][] = [[undefined, 50], [0, 50], [1, 1], [50, 50], [500, 500], [501, 500], [-3, 50]];
    for (const [asked, want] of rows) assert.equal(pageSize(asked === undefined ? undefined : { pageSize: asked }), want, String(asked));
  });

  test("a token round-trips its position; a foreign one names page.page_token", () => {
    const parse = ([at, id]: string[]) => {
      const t = positionParts.timestamp(at);
      const u = positionParts.uuid(id);
      return t && u ? { at: t, id: u } : undefined;
    };
    const id = "0b7e3c8e-6f0a-4f57-9f5e-3a6e2b1c9d10";
    const at = "2026-11-29T09:00:00.123456Z";
    assert.deepEqual(decodePageToken(encodePageToken([at, id]), parse), { at, id });
    assert.equal(decodePageToken("", parse), undefined);
    for (const token of ["garbage", "bm9wZQ", encodePageToken([at]), encodePageToken(["yesterday", id]), Buffer.from("[1,2]").toString("base64url")]) {
      assert.deepEqual(problemsOf(() => decodePageToken(token, parse)).map((p) => p.field), ["page.page_token"], token);
    }
  });

  test("the usual (time, uuid) position, and the SQL that reads its time to the microsecond", () => {
    const id = "0b7e3c8e-6f0a-4f57-9f5e-3a6e2b1c9d10";
    assert.deepEqual(decodeTimeIdToken(encodePageToken(["2026-11-29T09:00:00.123456Z", id])), { at: "2026-11-29T09:00:00.123456Z", id });
    // Before, "foo 1" and year -271821 passed (JavaScript parses them) and PostgreSQL refused them: INTERNAL.
    for (const bad of [[id, "2026-11-29T09:00:00Z"], ["2026-11-29T09:00:00Z", id, "extra"], ["2026-11-29T09:00:00Z", "not-a-uuid"], ["foo 1", id], ["-271821-04-20T00:00:00Z", id], ["0000-01-01T00:00:00Z", id],
      // Rolled on by JavaScript, refused by PostgreSQL: a day, an hour or an offset that is not on the calendar.
      ["2024-02-30T00:00:00Z", id], ["2023-02-29T00:00:00Z", id], ["2024-04-31T00:00:00Z", id], ["2024-01-01T24:00:00Z", id], ["2024-01-01T00:00:00+23:59", id], ["2024-01-01T00:00:00+1600", id]]) {
      assert.deepEqual(problemsOf(() => decodeTimeIdToken(encodePageToken(bad))).map((p) => p.field), ["page.page_token"], String(bad[0]));
    }
    for (const good of ["2024-02-29T23:59:59.999999Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-01-01T00:00:00+15:59", "2024-01-01T00:00:00-0300"]) {
      assert.deepEqual(decodeTimeIdToken(encodePageToken([good, id])), { at: good, id }, good);
    }
    assert.equal(keysetTime("t.created_at"), `to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
  });

  test("a page of rows fetched with LIMIT size + 1: a token only when there are more", () => {
    const rows = [{ n: 1 }, { n: 2 }, { n: 3 }];
    assert.deepEqual(keysetPage(rows, 3, (r) => [r.n]), { items: rows, nextPageToken: "" });
    const page = keysetPage(rows, 2, (r) => [r.n]);
    assert.deepEqual(page.items, rows.slice(0, 2));
    assert.deepEqual(decodePageToken(page.nextPageToken, ([n]) => positionParts.integer(n)), 2n);
  });
});

describe("field errors", () => {
  test("the message names each field and the details carry protovalidate violations", () => {
    const err = fieldErrors([
      { field: "postings[2].amount", message: "must be positive" },
      { field: "currency", message: "unsupported", ruleId: "currency.known" },
    ]);
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(err.rawMessage, "postings[2].amount: must be positive; currency: unsupported");
    assert.deepEqual(violationsOf(err), [
      { field: "postings[2].amount", message: "must be positive", ruleId: "invalid" },
      { field: "currency", message: "unsupported", ruleId: "currency.known" },
    ]);
    assert.equal(violationsOf(fieldError("page.page_token", "x"))[0].field, "page.page_token");
  });
});
