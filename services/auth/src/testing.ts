// The SMS API, simulated (Africa's Talking's shape), for tests, benches and `make run`.
export { startSmsSimulator, type SmsSimulator } from "./sms-simulator.js";
// A partner's signed Connect calls, for tests that go through the gateway.
export { partnerCallSigner, type PartnerKey } from "./partner-signer.js";
