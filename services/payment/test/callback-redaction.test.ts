import assert from "node:assert/strict";
import { test } from "node:test";
import { redactedCallbackBody } from "../src/callback-redaction.js";

const shown = (body: unknown) => JSON.parse(Buffer.from(redactedCallbackBody(Buffer.from(JSON.stringify(body)))).toString());
const valueOf = (params: { Key: string; Value: unknown }[], key: string) => params.find((p) => p.Key === key)!.Value;

test("every party Daraja names in a result is masked: B2C's receiver, a reversal's two parties, a status query's", () => {
  const parameters = [
    { Key: "ReceiverPartyPublicName", Value: "254722000111 - JANE DOE" },
    { Key: "CreditPartyPublicName", Value: "254722000111 - JANE DOE" },
    { Key: "DebitPartyPublicName", Value: "600000 - TTIP" },
    { Key: "CreditPartyName", Value: "254722000111 - JANE DOE" },
    { Key: "Amount", Value: 500 },
    { Key: "OriginalTransactionID", Value: "SGH12345AB" },
  ];
  const result = shown({ Result: { ResultCode: 0, ResultParameters: { ResultParameter: parameters } } }).Result.ResultParameters.ResultParameter;
  for (const key of ["ReceiverPartyPublicName", "CreditPartyPublicName", "CreditPartyName"]) {
    assert.equal(valueOf(result, key), "2547******11 - J*** D***", key);
  }
  assert.equal(valueOf(result, "DebitPartyPublicName"), "600000 - T***", "a shortcode's name is masked as any party's");
  assert.equal(valueOf(result, "Amount"), 500, "what support acts on is kept");
  assert.equal(valueOf(result, "OriginalTransactionID"), "SGH12345AB");
  assert.doesNotMatch(JSON.stringify(result), /722000|JANE|DOE/);
});

test("a card provider's event: the card holder's name, e-mail, number and address masked or withheld, the card's digits, expiry and the client secret withheld; amounts and ids kept", () => {
  const charge = {
    id: "evt_1", type: "charge.refunded",
    data: { object: {
      id: "ch_1", object: "charge", amount: 50000, amount_refunded: 50000, currency: "usd", payment_intent: "pi_1", receipt_email: "jane.doe@example.com",
      billing_details: { name: "Jane Doe", email: "jane.doe@example.com", phone: "+14155550123", address: { line1: "1 Market St", city: "San Francisco", postal_code: "94105", country: "US" } },
      payment_method_details: { type: "card", card: { brand: "visa", country: "US", last4: "4242", exp_month: 12, exp_year: 2031, fingerprint: "Xt5EWLLDS7FJjR1c" } },
    } },
  };
  const intent = { id: "evt_2", type: "payment_intent.succeeded", data: { object: { id: "pi_1", amount: 50000, currency: "usd", client_secret: "pi_1_secret_abc" } } };
  const capture = {
    id: "WH-1", event_type: "CHECKOUT.ORDER.APPROVED",
    resource: { id: "5O190127TN364715T", purchase_units: [{ amount: { currency_code: "USD", value: "5.00" }, shipping: { name: { full_name: "Jane Doe" }, address: { address_line_1: "1 Market St", postal_code: "94105" } } }],
      payer: { name: { given_name: "Jane", surname: "Doe" }, email_address: "jane.doe@example.com", phone: { phone_number: { national_number: "4155550123" } }, address: { country_code: "US" } } },
  };
  const all = JSON.stringify([shown(charge), shown(intent), shown(capture)]);
  assert.doesNotMatch(all, /Jane|Doe|jane\.doe|4155550123|Market|94105|4242|2031|Xt5EWLLDS7FJjR1c|secret_abc/);
  const c = shown(charge).data.object;
  assert.deepEqual([c.id, c.amount, c.amount_refunded, c.currency, c.payment_intent], ["ch_1", 50000, 50000, "usd", "pi_1"], "what support acts on is kept");
  assert.deepEqual([c.payment_method_details.card.brand, c.payment_method_details.card.country], ["visa", "US"]);
  assert.equal(c.billing_details.name, "J*** D***");
  assert.equal(c.payment_method_details.card.last4, "(withheld)");
  assert.equal(shown(capture).resource.purchase_units[0].amount.value, "5.00");
});
