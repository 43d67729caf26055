// A browser has no biometric prompt the app can call: the fallback is the explicit
// confirmation step the withdraw screen shows, then the WebCrypto device key signs.
import type { Biometric } from "./biometric";

export type { Biometric } from "./biometric";

export const phoneBiometric: Biometric = { confirm: async () => true };
