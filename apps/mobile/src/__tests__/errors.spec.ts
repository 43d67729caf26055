import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { plainError } from "../lib/errors";

// The phone says in Swahili what the web app says: its own copy had fallen behind the shared sentences.
test("in Swahili: an overloaded server is busy (nothing done), not a lost connection; an indexed field and an existing thing are named", () => {
  const overloaded = new ConnectError("overloaded", Code.Unavailable, undefined, [{ desc: DomainErrorInfoSchema, value: create(DomainErrorInfoSchema, { reason: "OVERLOADED" }) }]);
  expect(plainError(overloaded, "sw")).toBe("TTIP ina shughuli nyingi sasa hivi. Hakuna kilichofanyika; tafadhali jaribu tena baada ya sekunde chache.");
  expect(plainError(new ConnectError("preferences.kinds[4].key: must be a known kind", Code.InvalidArgument), "sw")).toBe("Tafadhali angalia preferences kinds key: must be a known kind.");
  expect(plainError(new ConnectError("phone: this number is saved already", Code.AlreadyExists), "sw")).toBe("Tafadhali angalia phone: this number is saved already.");
  expect(plainError(new ConnectError("no answer", Code.Unavailable), "en")).toBe("We cannot reach TTIP right now. Check your connection and try again.");
});
