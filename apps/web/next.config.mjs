import path from "node:path";
import { fileURLToPath } from "node:url";

/** @type {import('next').NextConfig} */
const config = {
  reactStrictMode: true,
  // The cluster's web image (deploy/Dockerfile --target web): server.js and only the
  // files it needs, traced from the repository's root (the workspace packages).
  output: "standalone",
  outputFileTracingRoot: path.join(path.dirname(fileURLToPath(import.meta.url)), "../.."),
  poweredByHeader: false,
  // The contracts' generated code is TypeScript in the proto workspace; venue's rounding rule's words
  // (@ttip/venue/rounding-rule, one file without imports) are shown by the screens; the card form
  // offers payment's currencies (@ttip/payment/card-currencies, one file without imports); amounts are
  // checked against M-Pesa's limits (@ttip/runtime/mpesa-limits, one file without imports).
  transpilePackages: ["@ttip/proto", "@ttip/venue", "@ttip/payment", "@ttip/runtime"],
  serverExternalPackages: ["@connectrpc/connect-node"],
  // Type-checked by `make typecheck` (tsc -p apps/web); the build stays quick.
  typescript: { ignoreBuildErrors: true },
  eslint: { ignoreDuringBuilds: true },
  images: { unoptimized: true },
  // No other site frames these pages: a framed withdrawal or split would take the worker's clicks (the browser's
  // device key signs the step-up without a gesture). As the admin console's.
  async headers() {
    // Not on photos: a header set here wins over the route's own, whose sandbox it would drop (it says frame-ancestors).
    return [{ source: "/((?!photos/).*)", headers: [{ key: "X-Frame-Options", value: "DENY" }, { key: "Content-Security-Policy", value: "frame-ancestors 'none'" }] }];
  },
  webpack(cfg) {
    // Generated code imports "./x_pb.js" for the file x_pb.ts.
    cfg.resolve.extensionAlias = { ".js": [".ts", ".tsx", ".js"] };
    return cfg;
  },
};
export default config;
