import { AuthService, AuthAdminService, AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** Users, roles, phone OTP, PINs, sessions and refresh tokens, device keys for biometric unlock, partner API keys, the audit log, and the signing keys (JWKS) that every other part verifies tokens with. */
export const auth: ServiceModule = {
  name: "auth",
  services: [AuthService, AuthAdminService, AuthInternalService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
