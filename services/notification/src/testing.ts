// The providers, simulated (Africa's Talking, Twilio, SendGrid, FCM), for tests, benches and `make run`.
export { ProviderSimulator } from "./simulator.js";
