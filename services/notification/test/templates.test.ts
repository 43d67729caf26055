import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Channel, SmsEncoding, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { quietUntil } from "../src/delivery.js";
import { generateKeyPairSync, sign } from "node:crypto";
import { checkSendgridSignature, checkTwilioSignature, sameSecret, twilioSignature } from "../src/signatures.js";
import { formatMoney, maskPhone, type Queryable } from "@ttip/runtime";
import { SMS_TEMPLATE_MAX_SEGMENTS, smsSize, smsTemplateTooLong } from "@ttip/runtime/sms-size";
import { findTemplate, forgetActiveTemplates } from "../src/stores/templates.js";
import {
  defaultTemplates,
  MissingVariablesError,
  render,
  resolveLocale,
  TEMPLATE_VARIABLES,
  unknownVariables,
} from "../src/templates.js";

describe("SMS segments", () => {
  test("GSM-7: 160 septets in one message, 153 per part after that", () => {
    assert.deepEqual(smsSize("a".repeat(160)), { encoding: SmsEncoding.GSM7, units: 160, segments: 1 });
    assert.equal(smsSize("a".repeat(161)).segments, 2);
    assert.equal(smsSize("a".repeat(306)).segments, 2);
    assert.equal(smsSize("a".repeat(307)).segments, 3);
    assert.equal(smsSize("").segments, 0);
  });

  test("GSM-7 extension characters count two and are not split across parts", () => {
    assert.deepEqual(smsSize("€".repeat(80)), { encoding: SmsEncoding.GSM7, units: 160, segments: 1 });
    assert.equal(smsSize(`${"a".repeat(159)}€`).segments, 2);
    // 152 septets then an escape pair: 154 > 153, so the pair starts part 2.
    const s = smsSize(`${"a".repeat(152)}[${"a".repeat(10)}`);
    assert.equal(s.units, 164);
    assert.equal(s.segments, 2);
    assert.equal(smsSize(`${"a".repeat(152)}[${"a".repeat(152)}`).segments, 3);
  });

  test("anything outside GSM-7 makes it UCS-2: 70 units, 67 per part, surrogate pairs count two", () => {
    assert.deepEqual(smsSize("ç".repeat(70)), { encoding: SmsEncoding.UCS2, units: 70, segments: 1 });
    assert.equal(smsSize("ç".repeat(71)).segments, 2);
    assert.equal(smsSize("ç".repeat(134)).segments, 2);
    assert.equal(smsSize("ç".repeat(135)).segments, 3);
    assert.equal(smsSize("🙂").units, 2);
    assert.equal(smsSize(`${"a".repeat(66)}🙂${"a".repeat(3)}`).segments, 2);
  });

  test("an SMS template may take 3 parts: 459 GSM-7 characters, 201 UCS-2 units", () => {
    assert.equal(SMS_TEMPLATE_MAX_SEGMENTS, 3);
    assert.equal(smsTemplateTooLong("a".repeat(459)), undefined);
    assert.match(smsTemplateTooLong("a".repeat(460))!, /takes 4 \(460 GSM-7 units\)/);
    assert.equal(smsTemplateTooLong("ç".repeat(201)), undefined);
    assert.match(smsTemplateTooLong("ç".repeat(202))!, /201 characters when it has any beyond.*takes 4 \(202 UCS-2 units\)/);
  });

  test("every default SMS template fits GSM-7 (Swahili included)", () => {
    for (const t of defaultTemplates().filter((t) => t.channel === Channel.SMS)) {
      const vars = Object.fromEntries(TEMPLATE_VARIABLES[t.key].map((v) => [v, "x"]));
      const size = smsSize(render(t.body, vars));
      assert.equal(size.encoding, SmsEncoding.GSM7, `${TemplateKey[t.key]}/${t.locale}`);
      assert.equal(size.segments, 1, `${TemplateKey[t.key]}/${t.locale} should be one SMS`);
    }
  });
});

describe("templates", () => {
  test("seeds every kind in en and sw on every channel", () => {
    const rows = defaultTemplates();
    // Counted from the contract, so a kind added there must come with its templates.
    const kinds = Object.values(TemplateKey).filter((k) => typeof k === "number" && k !== TemplateKey.UNSPECIFIED);
    assert.equal(rows.length, kinds.length * 2 * 4);
    assert.equal(new Set(rows.map((r) => `${r.key}/${r.locale}/${r.channel}`)).size, rows.length, "each kind, locale and channel once");
    for (const r of rows) assert.deepEqual(unknownVariables(r.key, r.subject, r.body), [], `${TemplateKey[r.key]}/${r.locale}`);
  });

  test("renders variables and names the missing ones", () => {
    assert.equal(render("Code {{code}} ({{ minutes }} min)", { code: "123456", minutes: "5" }), "Code 123456 (5 min)");
    assert.throws(() => render("{{code}} {{minutes}}", { code: "1" }), (e: unknown) => e instanceof MissingVariablesError && e.missing.join() === "minutes");
    // An empty optional value leaves no stray space behind.
    assert.equal(render("Tip received. {{message}}", { message: "" }), "Tip received.");
    assert.deepEqual(unknownVariables(TemplateKey.OTP, "{{code}} {{pin}}"), ["pin"]);
  });

  test("renders as the regular-expression fill it replaced, on every default template and odd texts", () => {
    // The fill as it was (replace with a callback over the text), the reference for the split-once one.
    const PLACEHOLDER = /\{\{\s*([a-z_]{1,40})\s*\}\}/g;
    const byReplace = (text: string, variables: Record<string, string>) =>
      text.replace(PLACEHOLDER, (_, name: string) => variables[name]).replace(/[ \t]+$/gm, "").replace(/ {2,}/g, " ");
    const values = ["", "KES 1,000", "  two  spaces ", "$& $1 $$ {{code}}", "line\nbreak \t", "Asante sana!"];
    const texts = [
      ...defaultTemplates().flatMap((r) => [r.subject, r.body]),
      "",
      "no placeholders at all  here ",
      "{{code}}",
      "{{ code }}{{code}} {{minutes}}\n{{ minutes}} tail",
      "{{code}} {{ bad-name }} {{CODE}} {{{code}}}",
    ];
    let compared = 0;
    for (const text of texts) {
      for (let i = 0; i < values.length; i++) {
        const variables: Record<string, string> = {};
        for (const [n, name] of [...new Set(Object.values(TEMPLATE_VARIABLES).flat().concat("code", "minutes"))].entries()) variables[name] = values[(i + n) % values.length];
        assert.equal(render(text, variables), byReplace(text, variables), JSON.stringify({ text, variables }));
        compared++;
      }
    }
    assert.ok(compared > 200);
  });

  test("locales fall back to English", () => {
    assert.equal(resolveLocale("sw"), "sw");
    assert.equal(resolveLocale("fr"), "en");
    assert.equal(resolveLocale(""), "en");
  });

  test("money is formatted from minor units without floats", () => {
    assert.equal(formatMoney(150000n, "KES"), "KES 1,500");
    assert.equal(formatMoney(123456789n, "KES"), "KES 1,234,567.89");
    assert.equal(formatMoney(5n, "KES"), "KES 0.05");
    assert.equal(formatMoney(9007199254740993n, "UGX"), "UGX 9,007,199,254,740,993");
  });

  test("phones are masked", () => {
    assert.equal(maskPhone("+254712345678"), "2547******78");
  });
});

describe("quiet hours (East Africa Time)", () => {
  test("inside a window over midnight, sends wait for its end", () => {
    // 23:30 EAT = 20:30 UTC; quiet 22:00-07:00 ends 07:00 EAT = 04:00 UTC next day.
    assert.equal(quietUntil(new Date("2026-01-10T20:30:00Z"), "22:00", "07:00")?.toISOString(), "2026-01-11T04:00:00.000Z");
    // 06:00 EAT = 03:00 UTC; ends the same day.
    assert.equal(quietUntil(new Date("2026-01-10T03:00:00Z"), "22:00", "07:00")?.toISOString(), "2026-01-10T04:00:00.000Z");
    assert.equal(quietUntil(new Date("2026-01-10T09:00:00Z"), "22:00", "07:00"), undefined);
    assert.equal(quietUntil(new Date("2026-01-10T09:00:00Z"), "", ""), undefined);
  });
});

describe("callback signatures", () => {
  test("Twilio: Twilio's documented example signature", () => {
    // From Twilio's security docs ("Validating Signatures from Twilio").
    const params = { CallSid: "CA1234567890ABCDE", Caller: "+14158675310", Digits: "1234", From: "+14158675310", To: "+18005551212" };
    const url = "https://mycompany.com/myapp.php?foo=1&bar=2";
    assert.equal(twilioSignature("12345", url, params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    assert.ok(checkTwilioSignature("12345", url, params, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
    assert.ok(!checkTwilioSignature("12345", url, { ...params, Digits: "9" }, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
    assert.ok(!checkTwilioSignature("12346", url, params, "GvWf1cFY/Q7PnoempGyD5oXAezc="), "another auth token");
  });

  test("SendGrid: a genuine signature passes; after the configured key changes (a reload), only the new key's do", () => {
    const keys = [0, 1].map(() => generateKeyPairSync("ec", { namedCurve: "P-256" }));
    const der = (i: number) => keys[i].publicKey.export({ format: "der", type: "spki" }).toString("base64");
    const body = Buffer.from('[{"event":"delivered","sg_message_id":"m1.x"}]');
    const signed = (i: number) => sign("sha256", Buffer.concat([Buffer.from("1700000000"), body]), keys[i].privateKey).toString("base64");
    assert.ok(checkSendgridSignature(der(0), "1700000000", body, signed(0)));
    assert.ok(!checkSendgridSignature(der(0), "1700000001", body, signed(0)), "another timestamp");
    assert.ok(!checkSendgridSignature(der(1), "1700000000", body, signed(0)), "the old key's signature after the change");
    assert.ok(checkSendgridSignature(der(1), "1700000000", body, signed(1)));
  });

  test("Africa's Talking callback token: equal only when the same and set", () => {
    assert.ok(sameSecret("tok-1", "tok-1"));
    assert.ok(!sameSecret("tok-1", "tok-2"));
    assert.ok(!sameSecret("tok-1", "tok-"));
    assert.ok(!sameSecret("", ""));
  });

  test("SendGrid: a bad key or signature is refused", () => {
    assert.ok(!checkSendgridSignature("", "1", Buffer.from("[]"), "x"));
    assert.ok(!checkSendgridSignature("bm90IGEga2V5", "1", Buffer.from("[]"), "c2ln"));
  });
});

describe("configuration", () => {
  test("production refuses the simulators, and real mode needs the primary SMS provider's credentials", async () => {
    const { loadEnvConfig } = await import("../src/config.js");
    assert.equal(loadEnvConfig({}).NOTIFICATION_PROVIDERS, "simulator");
    assert.throws(() => loadEnvConfig({ NODE_ENV: "production" }), /NOTIFICATION_PROVIDERS: must be real/);
    assert.throws(() => loadEnvConfig({ NOTIFICATION_PROVIDERS: "real" }), /NOTIFICATION_AT_API_KEY: is required/);
    assert.throws(() => loadEnvConfig({ NOTIFICATION_PROVIDERS: "real", NOTIFICATION_SMS_PRIMARY: "twilio" }), /NOTIFICATION_TWILIO_AUTH_TOKEN: is required/);
    const ok = loadEnvConfig({ NOTIFICATION_PROVIDERS: "real", NOTIFICATION_AT_USERNAME: "ttip", NOTIFICATION_AT_API_KEY: "k" });
    assert.equal(ok.NOTIFICATION_AT_BASE_URL, "https://api.africastalking.com");
  });
});

describe("active templates as read a moment ago", () => {
  /** A database answering the active template as `body`, when `answered` resolves. */
  const database = (body: string, answered: Promise<void> = Promise.resolve()) =>
    ({
      query: async () => {
        await answered;
        return { rows: [{ key: TemplateKey.TIP_RECEIVED, locale: "en", channel: Channel.SMS, version: 1, subject: "", body, active: true, created_at: new Date() }] };
      },
    }) as unknown as Queryable;

  test("a read that began before an activation is not kept: the next message renders the version activated", async () => {
    forgetActiveTemplates();
    let answer!: () => void;
    // Its SELECT saw the old version; its answer comes after the activation committed and forgot what was kept.
    const before = findTemplate(database("old", new Promise((resolve) => (answer = resolve))), TemplateKey.TIP_RECEIVED, "en", Channel.SMS);
    forgetActiveTemplates();
    answer();
    assert.equal((await before)?.body, "old");
    assert.equal((await findTemplate(database("new"), TemplateKey.TIP_RECEIVED, "en", Channel.SMS))?.body, "new");
    // Kept once read after the activation.
    assert.equal((await findTemplate(database("newer"), TemplateKey.TIP_RECEIVED, "en", Channel.SMS))?.body, "new");
    forgetActiveTemplates();
  });
});
