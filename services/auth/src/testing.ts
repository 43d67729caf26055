// The SMS API, simulated (Africa's Talking's shape), for tests, benches and `make run`.
export { startSmsSimulator, type SmsSimulator } from "./sms-simulator.js";
