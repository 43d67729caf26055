// The worker's forms' checks (the contracts' rules, before any call), the
// two dictionaries, the language choice, the statement PDF and the charts'
// markup. No browser: these are the pieces the screens are made of.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { create } from "@bufbuild/protobuf";
import { GetStatementResponseSchema } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { ColumnChart, RowChart } from "../src/components/charts.js";
import { checkNotifications, checkPayout, checkPhotoFile, checkPinChange, checkProfile, checkWithdrawal, MAX_PHOTO_FILE_BYTES } from "../src/lib/forms.js";
import { roleDictionaries, roleLabel, WORKER_ROLES } from "../src/lib/roles.js";
import { makePdf } from "../src/lib/pdf.js";
import { statementPdf } from "../src/lib/statement-pdf.js";
import { readableAgent } from "../src/lib/user-agent.js";
import { sitePath } from "../src/lib/site-path.js";
import { workerDictionaries, workerLocale, workerT } from "../src/lib/worker-i18n.js";
import { LimitKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { limitWord } from "../src/app/w/words.js";

const problem = (c: { ok: boolean; problem?: string }) => (c.ok ? "ok" : c.problem);

test("profile: a name of 1 to 60 characters; a photo only as an https link; a role of at most 40 characters on one line", () => {
  assert.deepEqual(checkProfile("  Amina W. ", ""), { ok: true, value: { displayName: "Amina W.", photoUrl: "", role: "" } });
  assert.deepEqual(checkProfile("Amina", "", " waiter "), { ok: true, value: { displayName: "Amina", photoUrl: "", role: "waiter" } });
  assert.equal(problem(checkProfile("Amina", "", "x".repeat(41))), "err_role");
  assert.equal(problem(checkProfile("Amina", "", "mpishi\nmkuu")), "err_role");
  assert.equal(problem(checkProfile("Amina", "", "👩🏾‍🍳".repeat(5))), "ok", "counted in characters as the contract counts them, not UTF-16 units");
  assert.equal(problem(checkProfile("   ", "")), "err_name");
  assert.equal(problem(checkProfile("x".repeat(61), "")), "err_name");
  assert.equal(problem(checkProfile("Amina", "http://example.com/a.jpg")), "err_photo");
  assert.equal(problem(checkProfile("Amina", "javascript:alert(1)")), "err_photo");
  assert.equal(problem(checkProfile("Amina", "https://example.com/a.jpg")), "ok");
});

test("a photo file: picked, at most 2 MB, and a JPEG, PNG or WebP", () => {
  assert.equal(problem(checkPhotoFile(undefined)), "err_photoNone");
  assert.equal(problem(checkPhotoFile({ size: 0, type: "" })), "err_photoNone", "an empty file input");
  assert.equal(problem(checkPhotoFile({ size: MAX_PHOTO_FILE_BYTES + 1, type: "image/jpeg" })), "err_photoBig");
  assert.equal(problem(checkPhotoFile({ size: 1_000, type: "image/gif" })), "err_photoType");
  assert.equal(problem(checkPhotoFile({ size: 1_000, type: "image/heic" })), "err_photoType");
  for (const type of ["image/jpeg", "image/png", "image/webp"]) assert.equal(problem(checkPhotoFile({ size: MAX_PHOTO_FILE_BYTES, type })), "ok", type);
});

test("roles: every known role named in both languages; a worker's own words shown as written", () => {
  for (const locale of ["en", "sw"] as const) {
    assert.deepEqual(Object.keys(roleDictionaries[locale]).sort(), [...WORKER_ROLES].sort());
    for (const r of WORKER_ROLES) assert.ok(roleDictionaries[locale][r].trim() && roleDictionaries[locale][r] !== r, `${locale} ${r}`);
  }
  assert.equal(roleLabel("bartender", "sw"), "Mhudumu wa baa");
  assert.equal(roleLabel("Fundi wa viatu", "en"), "Fundi wa viatu");
});

test("PIN change: 4 to 6 digits, typed twice the same, and not the current PIN", () => {
  assert.equal(problem(checkPinChange("4826", "123", "123")), "err_newPin");
  assert.equal(problem(checkPinChange("48a6", "5931", "5931")), "err_newPin");
  assert.equal(problem(checkPinChange("4826", "5931", "5932")), "err_pinsDiffer");
  assert.equal(problem(checkPinChange("4826", "4826", "4826")), "err_samePin");
  assert.deepEqual(checkPinChange("4826", "593107", "593107"), { ok: true, value: { currentPin: "4826", newPin: "593107" } });
});

test("payout settings: a Kenyan number or none; automatic payout needs a whole-shilling minimum of at least 10 (M-Pesa's least payout)", () => {
  assert.deepEqual(checkPayout("0712 345 678", true, "500"), { ok: true, value: { payoutPhone: "254712345678", autoPayout: true, minimumMinor: 50_000n } });
  assert.equal(problem(checkPayout("0812345678", false, "")), "err_phone");
  assert.equal(problem(checkPayout("", true, "")), "err_minimum");
  assert.equal(problem(checkPayout("", true, "0")), "err_minimum");
  assert.equal(problem(checkPayout("", true, "10.50")), "err_minimum", "M-Pesa moves whole shillings");
  assert.equal(problem(checkPayout("", true, "9")), "err_minimum", "M-Pesa pays out at least KES 10");
  assert.deepEqual(checkPayout("", true, "10"), { ok: true, value: { payoutPhone: "", autoPayout: true, minimumMinor: 1_000n } });
  assert.deepEqual(checkPayout("", false, ""), { ok: true, value: { payoutPhone: "", autoPayout: false, minimumMinor: 0n } });
});

test("notifications: quiet hours both HH:MM or both empty; an e-mail address or nothing", () => {
  assert.equal(problem(checkNotifications("22:00", "", "")), "err_quiet");
  assert.equal(problem(checkNotifications("25:00", "06:00", "")), "err_quiet");
  assert.equal(problem(checkNotifications("22:00", "6:00", "")), "err_quiet");
  assert.equal(problem(checkNotifications("22:00", "06:00", "amina@")), "err_email");
  assert.deepEqual(checkNotifications(" 22:00", "06:30 ", " a@b.co "), { ok: true, value: { quietHoursStart: "22:00", quietHoursEnd: "06:30", email: "a@b.co" } });
});

test("withdrawal: whole shillings 10 (M-Pesa's least payout) to the per-withdrawal limit (250,000 until known); the number empty (the payout number) or Kenyan", () => {
  assert.deepEqual(checkWithdrawal("1,000", ""), { ok: true, value: { amountMinor: 100_000n, mpesaPhone: "" } });
  assert.equal(problem(checkWithdrawal("0", "")), "err_amount");
  assert.equal(problem(checkWithdrawal("9", "")), "err_amount", "under M-Pesa's least payout");
  assert.deepEqual(checkWithdrawal("10", ""), { ok: true, value: { amountMinor: 1_000n, mpesaPhone: "" } });
  assert.equal(workerT("en")("err_amount", { max: "KES 250,000" }), "Enter whole shillings, from 10 to KES 250,000.");
  assert.equal(problem(checkWithdrawal("250001", "")), "err_amount");
  assert.equal(problem(checkWithdrawal("20001", "", 20_000)), "err_amount", "over the per-withdrawal limit the wallet reports");
  assert.deepEqual(checkWithdrawal("20000", "", 20_000), { ok: true, value: { amountMinor: 2_000_000n, mpesaPhone: "" } });
  assert.equal(problem(checkWithdrawal("99.5", "")), "err_amount");
  assert.equal(problem(checkWithdrawal("100", "12345")), "err_mpesa");
});

test("English and Swahili have the same keys, no empty text, and the same {placeholders}", () => {
  const { en, sw } = workerDictionaries;
  assert.deepEqual(Object.keys(sw).sort(), Object.keys(en).sort());
  for (const [k, v] of Object.entries(en)) {
    const swText = sw[k as keyof typeof sw];
    assert.ok(v && swText, `${k} has text in both`);
    const holes = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
    assert.deepEqual(holes(swText), holes(v), `${k}: same placeholders`);
  }
  assert.equal(workerT("sw")("leftOf", { left: "KES 5", limit: "KES 10" }), "KES 5 zimebaki kati ya KES 10");
});

test("a device's user agent as a person reads it: browser and system when named, the system alone when the stored 60 characters end before the browser, the phone app as itself, else the text shortened", () => {
  const sw = workerT("sw");
  const words = { browserOn: (browser: string, os: string) => sw("browserOn", { browser, os }), appOn: (os: string) => sw("appOn", { os }), unknown: sw("unknownDevice") };
  const android = "Mozilla/5.0 (Linux; Android 13; SM-A145F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";
  assert.equal(readableAgent(android, words), "Chrome kwenye Android");
  assert.equal(readableAgent(android.slice(0, 60), words), "Android");
  assert.equal(readableAgent("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", words), "Safari kwenye iPhone");
  assert.equal(readableAgent("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36 Edg/124.0", words), "Edge kwenye Windows");
  assert.equal(readableAgent("connect-es/2.2.0", words), "connect-es/2.2.0");
  // The phone app's device key and its requests (React Native's HTTP clients), not a library's name.
  assert.equal(readableAgent("TTIP app (android)", words), "Programu ya TTIP kwenye Android");
  assert.equal(readableAgent("okhttp/4.12.0", words), "Programu ya TTIP kwenye Android");
  assert.equal(readableAgent("TTIP/57 CFNetwork/1568.100.1 Darwin/24.0.0", words), "Programu ya TTIP kwenye iPhone");
  assert.equal(readableAgent("TTIP app (web)", words), "TTIP app (web)");
  assert.equal(readableAgent("x".repeat(80), words), `${"x".repeat(39)}…`);
  assert.equal(readableAgent("  ", words), "Kifaa kisichojulikana");
});

test("language: the chosen cookie wins, then the browser's first English or Swahili, else English", () => {
  assert.equal(workerLocale("a=1; ttip_lang=sw", ["en-GB"]), "sw");
  assert.equal(workerLocale("ttip_lang=en", ["sw-KE"]), "en");
  assert.equal(workerLocale("", ["fr-FR", "sw-KE", "en"]), "sw");
  assert.equal(workerLocale("", ["fr-FR"]), "en");
});

/** The objects' offsets in the xref table must point at "n 0 obj": what a PDF reader relies on. */
function checkXref(pdf: Uint8Array): string {
  const text = Buffer.from(pdf).toString("latin1");
  assert.ok(text.startsWith("%PDF-1.4\n"));
  assert.ok(text.endsWith("%%EOF\n"));
  const startxref = Number(/startxref\n(\d+)\n%%EOF\n$/.exec(text)![1]);
  assert.equal(text.slice(startxref, startxref + 4), "xref");
  const entries = [...text.slice(startxref).matchAll(/^(\d{10}) 00000 n $/gm)].map((m) => Number(m[1]));
  assert.ok(entries.length >= 5);
  entries.forEach((offset, i) => assert.equal(text.slice(offset, offset + `${i + 1} 0 obj`.length), `${i + 1} 0 obj`, `object ${i + 1} at its offset`));
  for (const m of text.matchAll(/<< \/Length (\d+) >>\nstream\n/g)) {
    const start = m.index! + m[0].length;
    assert.equal(text.slice(start + Number(m[1]), start + Number(m[1]) + 10), "\nendstream", "each stream's length is exact");
  }
  return text;
}

test("the statement PDF: valid structure, built-in fonts only, the rows and both balances, pages as needed", () => {
  const rows = Array.from({ length: 120 }, (_, i) => ({
    postedAt: { seconds: BigInt(1_790_000_000 + i * 3600), nanos: 0 },
    entryId: `e${i}`,
    description: i === 0 ? "Tip (M-Pesa) from 2547****678 (café)" : "Tip",
    amount: { amountMinor: 28_500n, currency: "KES" },
    balanceAfter: { amountMinor: 28_500n * BigInt(i + 1), currency: "KES" },
  }));
  const s = create(GetStatementResponseSchema, { openingBalance: { amountMinor: 0n, currency: "KES" }, closingBalance: { amountMinor: 28_500n * 120n, currency: "KES" }, rows });
  const text = checkXref(statementPdf(s, "2026-11", workerT("sw")));
  assert.match(text, /\(Taarifa ya TTIP 2026-11\) Tj/);
  assert.match(text, /\(Salio la mwisho: KES 34,200\) Tj/);
  assert.match(text, /caf\xe9/, "Latin-1 text kept as is");
  // The rows are hourly from 14:13 UTC: on Nairobi's clock (the statement's month is Nairobi's) the first reads 17:13.
  assert.doesNotMatch(text, /\(2026-09-21 1[456]:13\) Tj/, "no row on UTC's clock");
  assert.match(text, /\(2026-09-21 17:13\) Tj/);
  assert.equal((text.match(/\(KES 285\) Tj/g) ?? []).length, 121, "every row's amount, and the first row's balance");
  assert.match(text, /\/Count 3 /, "120 rows take three A4 pages");
  assert.doesNotMatch(text, /FontFile|http/, "no font embedded or fetched");
});

test("the PDF writer escapes what would end a string and replaces what Helvetica cannot show", () => {
  const text = checkXref(makePdf([{ cells: ["a (b) \\ c", "emoji 😀"] }], [0, 100]));
  assert.match(text, /\(a \\\(b\\\) \\\\ c\) Tj/);
  assert.match(text, /\(emoji \?\?\) Tj/);
});

test("charts: one bar per figure, its exact value kept, bars scaled to the largest, figures listed for screen readers", () => {
  const bars = [
    { label: "09", value: 30_000n, text: "KES 300" },
    { label: "10", value: 0n, text: "KES 0" },
    { label: "11", value: 15_000n, text: "KES 150" },
  ];
  const html = renderToStaticMarkup(createElement(ColumnChart, { title: "By hour", bars, testId: "c" }));
  assert.deepEqual([...html.matchAll(/data-value="(\d+)"/g)].map((m) => m[1]), ["30000", "0", "15000"]);
  const heights = [...html.matchAll(/<rect[^>]* height="([\d.]+)"/g)].map((m) => Number(m[1]));
  assert.equal(heights[0], 60, "the largest bar is full height");
  assert.equal(heights[2], 30, "half the value, half the height");
  assert.ok(heights[1] < 1, "a zero is a hairline");
  assert.match(html, /<li>11: KES 150<\/li>/);
  const rows = renderToStaticMarkup(createElement(RowChart, { title: "Staff", bars }));
  assert.match(rows, /aria-label="Staff"/);
  assert.equal((rows.match(/<g /g) ?? []).length, 3);
});

test("API errors read as sentences naming the field, in the person's language, never a code", async () => {
  const { ConnectError, Code } = await import("@connectrpc/connect");
  const { plainError } = await import("../src/lib/errors.js");
  const e = new ConnectError("preferences.kinds[4].key: must be a defined template key", Code.InvalidArgument);
  assert.equal(plainError(e), "Please check the preferences kinds key: must be a defined template key.");
  assert.equal(plainError(new ConnectError("amount: must be whole shillings", Code.InvalidArgument), "sw"), "Tafadhali angalia amount: must be whole shillings.");
  assert.equal(plainError(new ConnectError("x", Code.Unauthenticated), "sw"), "Muda wako umekwisha. Tafadhali ingia tena.");
  assert.equal(plainError(new ConnectError("boom", Code.Internal)), "Something went wrong on our side. Please try again.");
  // A call lost to a concurrent change says what the service said of it: before, "Something went wrong on our side".
  const aborted = new ConnectError("an automatic payout is placing its hold on your balance; ask again shortly", Code.Aborted);
  assert.equal(plainError(aborted), "That could not be done just now: an automatic payout is placing its hold on your balance; ask again shortly.");
});

test("fixed percentages: typed as 12.5 and kept as basis points, never a float; over 100 or three decimals refused", async () => {
  const { basisPoints } = await import("../src/app/v/util.js");
  assert.equal(basisPoints("12.5"), 1_250);
  assert.equal(basisPoints("33.33"), 3_333);
  assert.equal(basisPoints("100"), 10_000);
  assert.equal(basisPoints("0.01"), 1);
  assert.equal(basisPoints("100.01"), undefined);
  assert.equal(basisPoints("1.234"), undefined);
  assert.equal(basisPoints("-5"), undefined);
});

test("the venue screens' English and Swahili have the same keys and {placeholders}", async () => {
  const { venueDictionaries, venueT } = await import("../src/lib/venue-i18n.js");
  const { en, sw } = venueDictionaries;
  assert.deepEqual(Object.keys(sw).sort(), Object.keys(en).sort());
  const holes = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
  for (const [key, text] of Object.entries(en)) assert.deepEqual(holes(sw[key as keyof typeof sw]), holes(text), key);
  assert.equal(venueT("sw")("v_imported", { n: 3, refused: 2 }), "mistari 3 imeletwa; 2 imekataliwa.");
});

test("a venue's roles by name: the defaults in the reader's language, a renamed or own role as the manager named it, a key only when nothing else is known", async () => {
  const { venueRoleName } = await import("../src/lib/venue-i18n.js");
  const foh = { roleId: "front_of_house", name: "Front of house" };
  assert.equal(venueRoleName(foh, foh.roleId, "en"), "Front of house");
  assert.equal(venueRoleName(foh, foh.roleId, "sw"), "Wahudumu wa mbele");
  assert.equal(venueRoleName({ ...foh, name: "Floor" }, foh.roleId, "sw"), "Floor");
  assert.equal(venueRoleName({ roleId: "barista", name: "Barista" }, "barista", "sw"), "Barista");
  assert.equal(venueRoleName(undefined, "kitchen", "sw"), "Jikoni", "before the roles have loaded");
  assert.equal(venueRoleName(undefined, "pastry", "en"), "pastry");
});

test("withdrawal limits: each kind the wallet reports has its own name in both languages, not the bare \"Limit\"", () => {
  for (const locale of ["en", "sw"] as const) {
    const t = workerT(locale);
    const kinds = Object.values(LimitKind).filter((k): k is LimitKind => typeof k === "number" && k !== LimitKind.UNSPECIFIED);
    const names = kinds.map((k) => limitWord(t, k));
    for (const [i, name] of names.entries()) assert.notEqual(name, t("limitOther"), `${LimitKind[kinds[i]]} in ${locale}`);
    assert.equal(new Set(names).size, names.length, `one name per limit in ${locale}: ${names.join(", ")}`);
  }
  assert.equal(limitWord(workerT("en"), LimitKind.MPESA_DAILY), "M-Pesa today");
});

test("a link's way back stays on this site: a path with its query, never another host however it is written", () => {
  assert.equal(sitePath("/join/abc?x=1#top", "/w"), "/join/abc?x=1#top");
  assert.equal(sitePath("/v/../w/qr", "/w"), "/w/qr");
  // Before, sign-in took "/\evil.example" (it starts with "/" and not "//"); a browser reads it as //evil.example.
  for (const away of ["/\\evil.example", "//evil.example", "https://evil.example/w", "/\\/evil.example", "javascript:alert(1)", "", null]) {
    assert.equal(sitePath(away, "/w"), "/w", String(away));
  }
});
