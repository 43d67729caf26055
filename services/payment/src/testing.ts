// The edge of the world, simulated: Daraja (STK push, C2B, B2C, queries), the USSD gateway,
// Stripe and PayPal, speaking their real HTTP shapes. For tests, benches and `make run`;
// a deployment talks to the real providers.
export { type C2bPayRequest, type C2bPayResult, type C2bRegistration } from "./daraja/c2b-simulator.js";
export { startDarajaSimulator, SIMULATOR_CERTIFICATE_PEM, type DarajaSimulator, type Script as SimScript, type SimTransaction, type SimulatorOptions } from "./daraja/simulator.js";
export { playDialogue, UssdSession, UssdSessionEnded, type UssdScreen, type UssdSessionOptions } from "./ussd-simulator.js";
export { startStripeSimulator, type StripeSimulator } from "./cards/stripe-simulator.js";
export { startPayPalSimulator, type PayPalSimulator } from "./cards/paypal-simulator.js";
