import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { TipSucceededCodeViewSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent } from "@ttip/runtime";
import { DynamicParametersSchema } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { buildKeQrPayload, crc16CcittFalse, emvText, tlv } from "../src/emvco.js";
import { newShortCode, normalizeShortCode, oneSlipAway, SHORT_CODE_ALPHABET, shortCodeDigits, shortCodeFromDigits } from "../src/shortcode.js";
import { PayloadError, PayloadSigner } from "../src/signing.js";
import { countedTip } from "../src/tips.js";
import { crc16, decodeEmvco, parseTlv } from "./emvco-decoder.js";

// Published vectors (EMVCo MPM spec sample and two Kenyan payloads).
const EMVCO_SAMPLE =
  "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";
const KONNECT = "00020101021128184614460120002574375303404540597.005802KE5914KONNECT WALLET6007NAIROBI61020082262024-06-12 17:28:40.7381586304ED73";

describe("EMVCo CRC and TLV", () => {
  test("both CRC implementations give the CRC-16/CCITT-FALSE check value 0x29B1", () => {
    assert.equal(crc16CcittFalse("123456789"), 0x29b1);
    assert.equal(crc16(new TextEncoder().encode("123456789")), 0x29b1);
  });

  test("the test decoder accepts published payloads and rejects a changed one", () => {
    for (const p of [EMVCO_SAMPLE, KONNECT]) assert.ok(decodeEmvco(p).crcOk, p.slice(0, 30));
    assert.equal(parseTlv(parseTlv(EMVCO_SAMPLE).get("64")!).get("01"), "最佳运输");
    assert.equal(decodeEmvco(KONNECT.replace("97.00", "98.00")).crcOk, false);
  });

  test("tlv counts characters and refuses empty or long values", () => {
    assert.equal(tlv("59", "Café"), "5904Café");
    assert.throws(() => tlv("59", ""));
    assert.throws(() => tlv("59", "x".repeat(100)));
    assert.equal(emvText("  Zoë <Wanjiku>\n", 25), "Zoe <Wanjiku>");
  });

  test("a KE-QR payload decodes with the independent decoder: tags, nesting and CRC", () => {
    const payload = buildKeQrPayload({
      shortcodeKind: "paybill",
      shortcode: "174379",
      accountReference: "K7M4QX",
      merchantName: "Wanjiku Kamau, Head Waiter at Java House",
      city: "Nairobi",
      merchantCategoryCode: "5812",
      ussdCode: "*483*123*05762935970#",
      issuedAt: new Date(Date.UTC(2026, 10, 25, 9, 5, 7)),
    });
    const d = decodeEmvco(payload);
    assert.ok(d.crcOk, "CRC");
    assert.equal(d.order[0], "00");
    assert.equal(d.order.at(-1), "63");
    const t = d.tags;
    assert.equal(t.get("00"), "01");
    assert.equal(t.get("01"), "11");
    assert.equal(t.get("53"), "404");
    assert.equal(t.get("58"), "KE");
    assert.equal(t.get("55"), "01");
    assert.equal(t.has("54"), false);
    assert.equal(t.get("59"), "Wanjiku Kamau, Head Waite");
    assert.equal(t.get("60"), "Nairobi");
    const account = parseTlv(t.get("28")!);
    assert.equal(account.get("00"), "ke.go.qr");
    assert.equal(account.get("01"), "174379");
    assert.equal(parseTlv(t.get("62")!).get("05"), "K7M4QX");
    assert.equal(parseTlv(t.get("81")!).get("01"), "*483*123*05762935970#");
    assert.equal(parseTlv(t.get("82")!).get("01"), "25112026 090507");
    assert.equal(parseTlv(t.get("83")!).get("01"), "04");
  });

  test("a fixed amount is tag 54 in shillings and the tip prompt is dropped; a till is type 03", () => {
    const payload = buildKeQrPayload({
      shortcodeKind: "till",
      shortcode: "5123456",
      accountReference: "ABCD23",
      merchantName: "Java",
      city: "Mombasa",
      merchantCategoryCode: "5812",
      ussdCode: "*483*123*02782115857#",
      fixedAmountMinor: 25050n,
      issuedAt: new Date(),
    });
    const d = decodeEmvco(payload);
    assert.ok(d.crcOk);
    assert.equal(d.tags.get("54"), "250.50");
    assert.equal(d.tags.has("55"), false);
    assert.equal(parseTlv(d.tags.get("83")!).get("01"), "03");
  });
});

describe("short codes", () => {
  test("one typing slip away: a changed, dropped, added or swapped character, and nothing else", () => {
    const near = new Set(oneSlipAway("K7M4QX"));
    assert.ok(near.has("K7M4QZ"), "changed");
    assert.ok(near.has("7KM4QX"), "swapped");
    assert.ok(!near.has("K7M4QX"), "not itself");
    assert.ok(!near.has("K7M4ZZ"), "two slips away");
    // A 0 typed for a code letter, a letter dropped, a letter added: the real code is found.
    assert.ok(oneSlipAway("K7M40X").includes("K7M4QX"));
    assert.ok(oneSlipAway("K7MQX").includes("K7M4QX"));
    assert.ok(oneSlipAway("K7M4QXQ").includes("K7M4QX"));
    assert.ok([...near].every((c) => c.length === 6 && [...c].every((ch) => SHORT_CODE_ALPHABET.includes(ch))));
    assert.deepEqual(oneSlipAway("TOOLONGREFERENCE"), []);
  });

  test("drawn from an alphabet with no 0, O, 1 or I", () => {
    assert.doesNotMatch(SHORT_CODE_ALPHABET, /[01OI]/);
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const c = newShortCode();
      assert.match(c, /^[2-9A-HJ-NP-Z]{6}$/);
      seen.add(c);
    }
    assert.ok(seen.size > 1990, "codes are random");
    assert.equal(normalizeShortCode(" k7m-4qx "), "K7M4QX");
  });

  test("as digits for a USSD string: eleven keypad digits that give the code back, and a digit typed wrong or two swapped give none", () => {
    const edges = ["222222", "ZZZZZZ", "K7M4QX"];
    for (const code of [...edges, ...Array.from({ length: 500 }, () => newShortCode())]) {
      const digits = shortCodeDigits(code);
      assert.match(digits, /^\d{11}$/, code);
      assert.equal(shortCodeFromDigits(digits), code);
      for (let i = 0; i < digits.length; i++) {
        for (let d = 0; d <= 9; d++) {
          if (String(d) === digits[i]) continue;
          assert.equal(shortCodeFromDigits(digits.slice(0, i) + d + digits.slice(i + 1)), undefined, `${digits}: digit ${i} as ${d}`);
        }
        const swapped = digits.slice(0, i) + digits[i + 1] + digits[i] + digits.slice(i + 2);
        // The one swap a Luhn digit misses is 09 <-> 90.
        if (i + 1 < digits.length && digits[i] !== digits[i + 1] && !/^(09|90)$/.test(digits[i] + digits[i + 1])) assert.equal(shortCodeFromDigits(swapped), undefined, `${digits}: ${i} swapped`);
      }
    }
    assert.equal(shortCodeDigits("222222"), "00000000000");
    assert.equal(shortCodeFromDigits("10737418243"), undefined, "past the largest code, its check digit right (32^6 - 1 = 1073741823)");
    for (const notDigits of ["K7M4QX", "0712345678", "071234567890", "1234567890a"]) assert.equal(shortCodeFromDigits(notDigits), undefined, notDigits);
  });
});

describe("signed payloads", () => {
  const signer = new PayloadSigner("k".repeat(32));
  const id = "0b7f3c1e-9a2d-4f5b-8c6d-7e8f9a0b1c2d";
  const parameters = create(DynamicParametersSchema, { table: "12", fixedAmount: { amountMinor: 20000n, currency: "KES" } });

  test("round-trip carries the id, expiry and parameters, and stays URL-safe and short", () => {
    const p = signer.sign({ qrCodeId: id, expiresAt: 2_000_000_000, parameters });
    assert.match(p, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(p.length < 120, `payload length ${p.length}`);
    const c = signer.verify(p);
    assert.equal(c.qrCodeId, id);
    assert.equal(c.expiresAt, 2_000_000_000);
    assert.equal(c.parameters.table, "12");
    assert.equal(c.parameters.fixedAmount?.amountMinor, 20000n);
  });

  test("any change to body or signature, or another key, is refused as a signature mismatch", () => {
    const p = signer.sign({ qrCodeId: id, parameters });
    const [body, sig] = p.split(".");
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
    for (const bad of [`${flip(body, 5)}.${sig}`, `${body}.${flip(sig, 3)}`, new PayloadSigner("x".repeat(32)).sign({ qrCodeId: id, parameters })]) {
      assert.throws(() => signer.verify(bad), (e: PayloadError) => e.reason === "signature");
    }
    for (const bad of ["nodot", "a.b.c", "bad*chars.x"]) assert.throws(() => signer.verify(bad), (e: PayloadError) => e.reason === "malformed");
  });

  test("a previous key still verifies after rotation, and the new key signs", () => {
    const old = new PayloadSigner("o".repeat(32)).sign({ qrCodeId: id, parameters });
    const rotated = new PayloadSigner("n".repeat(32), ["o".repeat(32)]);
    assert.equal(rotated.verify(old).qrCodeId, id);
    assert.throws(() => new PayloadSigner("o".repeat(32)).verify(rotated.sign({ qrCodeId: id, parameters })));
  });
});

describe("the tip count's view of tip_succeeded", () => {
  test("each field the view keeps has its TipSucceeded field's number and type, so the view reads the event's bytes", () => {
    for (const field of TipSucceededCodeViewSchema.fields) {
      const full = TipSucceededSchema.fields.find((f) => f.name === field.name);
      assert.ok(full, field.name);
      assert.deepEqual([field.number, field.fieldKind, field.scalar, field.message?.typeName], [full.number, full.fieldKind, full.scalar, full.message?.typeName], field.name);
    }
  });

  test("a whole TipSucceeded decodes to its tip, code and time, and nothing else is kept", () => {
    const at = new Date("2026-12-01T20:15:30.250Z");
    const event = buildEvent("payment", TipSucceededSchema, {
      tipId: "0190c2a4-7e1f-7a8b-9c0d-112233445566",
      workerId: "0190c2a4-0000-7000-8000-000000000001",
      venueId: "0190c2a4-0000-7000-8000-000000000002",
      qrCodeId: "0190c2a4-0000-7000-8000-000000000003",
      amount: { amountMinor: 10_000n, currency: "KES" },
      fee: { amountMinor: 150n, currency: "KES" },
      net: { amountMinor: 9_850n, currency: "KES" },
      mpesaReceipt: "TLL1ABCDEF",
      customerPhoneMasked: "2547******78",
      rating: 5,
      message: "asante sana",
      createdBy: "u1",
    }, "corr-1", at);
    const tip = countedTip(event.data);
    assert.equal(tip.tipId, "0190c2a4-7e1f-7a8b-9c0d-112233445566");
    assert.equal(tip.qrCodeId, "0190c2a4-0000-7000-8000-000000000003");
    assert.equal(tip.meta?.id, event.id);
    assert.equal(timestampDate(tip.meta!.occurredAt!).getTime(), at.getTime());
    assert.equal(tip.$unknown, undefined);
  });
});
