// The app imports the Connect clients generated from proto/ (proto/gen, TypeScript
// whose imports say ".js") and the money, phone and error helpers apps/web shares.
// Everything they import resolves from this app's node_modules only, so one copy of
// @bufbuild/protobuf and @connectrpc/connect is bundled.
const path = require("node:path");
const { getDefaultConfig } = require("expo/metro-config");

const root = path.resolve(__dirname, "../..");
const shared = { "@ttip/proto/": path.join(root, "proto/gen/"), "@ttip/web-lib/": path.join(root, "apps/web/src/lib/") };
// runtime's M-Pesa limits (one file without imports), which the shared money helpers check.
const sharedFiles = { "@ttip/runtime/mpesa-limits": path.join(root, "services/runtime/src/mpesa-limits.ts") };
const config = getDefaultConfig(__dirname);
config.watchFolders = [path.join(root, "proto/gen"), path.join(root, "apps/web/src/lib"), path.dirname(sharedFiles["@ttip/runtime/mpesa-limits"])];
config.resolver.nodeModulesPaths = [path.join(__dirname, "node_modules")];
config.resolver.disableHierarchicalLookup = true;
config.resolver.resolveRequest = (context, name, platform) => {
  if (Object.hasOwn(sharedFiles, name)) return { type: "sourceFile", filePath: sharedFiles[name] };
  for (const [prefix, dir] of Object.entries(shared)) {
    if (name.startsWith(prefix)) return { type: "sourceFile", filePath: path.join(dir, name.slice(prefix.length).replace(/\.js$/, "") + ".ts") };
  }
  const from = context.originModulePath;
  if (name.startsWith(".") && name.endsWith(".js") && (from.startsWith(shared["@ttip/proto/"]) || from.startsWith(shared["@ttip/web-lib/"]))) {
    return context.resolveRequest(context, name.replace(/\.js$/, ""), platform);
  }
  return context.resolveRequest(context, name, platform);
};
module.exports = config;
