import assert from "node:assert/strict";
import { test } from "node:test";
import { SmsEncoding } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { gsm7Text, smsSize } from "../src/sms-size.js";

test("gsm7Text: look-alikes replaced, accents dropped only where the alphabet lacks the letter, emoji left out, cut by characters", () => {
  assert.equal(gsm7Text("Ng’ang’a “Kiki” Wanjirũ 🌟", 40), `Ng'ang'a "Kiki" Wanjiru`);
  assert.equal(gsm7Text("Müller Renée Ñoño", 40), "Müller Renée Ñoño", "letters GSM-7 has are kept as they are");
  assert.equal(gsm7Text("Anne\u2013Marie\u00a0 \n Otieno\u2026", 40), "Anne-Marie Otieno...");
  assert.equal(gsm7Text("🌟🌟", 30), "", "nothing left: the caller's fallback");
  assert.equal(gsm7Text("Wanjiku Kamau wa Njoroge Kariuki", 30), "Wanjiku Kamau wa Njoroge Kariu");
  assert.equal(gsm7Text("Jane Doe Mwangi Otieno Ndungu 😀 Kim", 30), "Jane Doe Mwangi Otieno Ndungu");
  for (const name of ["Ng’ang’a 🌟", "Zoë ❤ Łukasz", "Ахмед", "\u0301\u0301"]) assert.equal(smsSize(`CON Tip ${gsm7Text(name, 30)}:`).encoding, SmsEncoding.GSM7, name);
});
