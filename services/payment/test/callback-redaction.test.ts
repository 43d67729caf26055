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
