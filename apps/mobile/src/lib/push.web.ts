// The browser build registers no push token (web push needs a service worker and
// VAPID keys the platform does not have yet); home still polls for new tips.
import type { PushRegistrar } from "./push";

export type { PushRegistrar, PushToken } from "./push";

export const phonePush: PushRegistrar = {
  token: async () => undefined,
  onNotification: () => () => undefined,
};
