// Signs and checks webhook deliveries with the providers' own SDKs published on npm, for the
// tests in tests/tests/integration/official_sdks.rs. The same interface as official.py:
//
//   node official.mjs sign PROVIDER     stdin: {"secret", "body", "url", "timestamp", "id"}
//                                       stdout: {"headers": {...}, "url": "..."}
//   node official.mjs verify PROVIDER   stdin: {"secret", "headers", "body", "url"}
//                                       stdout: {"valid": true|false}
//   node official.mjs providers         stdout: {"sign": [...], "verify": [...]}
//
// Every signature here is made, and every check done, by the provider's package (pinned in
// package.json and package-lock.json); nothing is computed by hand.

import { sign as octokitSign, verify as octokitVerify } from "@octokit/webhooks-methods";
import { LinearWebhookClient } from "@linear/sdk/webhooks";

const SIGNERS = {
  async github(d) {
    return { "x-hub-signature-256": await octokitSign(d.secret, d.body) };
  },
};

const VERIFIERS = {
  async github(d) {
    const signature = d.headers["x-hub-signature-256"] ?? "";
    return octokitVerify(d.secret, d.body, signature);
  },
  async linear(d) {
    try {
      // Throws on a bad signature or a webhookTimestamp more than a minute away.
      return new LinearWebhookClient(d.secret).verify(
        Buffer.from(d.body),
        d.headers["linear-signature"] ?? "",
      );
    } catch {
      return false;
    }
  },
};

async function main() {
  const [command, provider] = process.argv.slice(2);
  if (command === "providers") {
    const names = (table) => Object.keys(table).sort();
    console.log(JSON.stringify({ sign: names(SIGNERS), verify: names(VERIFIERS) }));
    return;
  }
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const delivery = JSON.parse(input);
  if (command === "sign") {
    const headers = await SIGNERS[provider](delivery);
    console.log(JSON.stringify({ headers, url: delivery.url }));
  } else if (command === "verify") {
    console.log(JSON.stringify({ valid: Boolean(await VERIFIERS[provider](delivery)) }));
  } else {
    console.error(`unknown command ${command}`);
    process.exit(2);
  }
}

await main();
