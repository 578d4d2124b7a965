// Recomputes, with the reference SDK, what our v2 backend derived from a signed open:
// the expiringNonceHash of the raw 0x76 transaction (deserialized by ox), the channel id
// of the descriptor carrying it, and a voucher signature for that channel.
//
// stdin:  {opens: [{raw, sender, descriptor, chainId, escrow, amount, key}]}
// stdout: {opens: [{expiringNonceHash, channelId, signature, calls}]}
import { Session } from "mppx/tempo";
import { createClient, custom } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { TxEnvelopeTempo } from "ox/tempo";
import { readStdin } from "./devchain.mjs";

const { Channel, Voucher } = Session.Precompile;
const client = createClient({
  transport: custom({
    request: async ({ method }) => {
      throw new Error(`v2_backend_check: unexpected RPC ${method}`);
    },
  }),
});

const request = await readStdin();

const opens = [];
for (const o of request.opens) {
  const transaction = TxEnvelopeTempo.deserialize(o.raw);
  const expiringNonceHash = Channel.computeExpiringNonceHash(transaction, { sender: o.sender });
  const descriptor = { ...o.descriptor, expiringNonceHash };
  const channelId = Channel.computeId({ ...descriptor, chainId: o.chainId, escrow: o.escrow });
  const signature = await Voucher.signVoucher(
    client,
    privateKeyToAccount(o.key),
    { channelId, cumulativeAmount: BigInt(o.amount) },
    o.escrow,
    o.chainId,
  );
  const calls = transaction.calls.map((c) => ({ to: c.to, data: c.data }));
  opens.push({ expiringNonceHash, channelId, signature, calls });
}
process.stdout.write(JSON.stringify({ opens }));
