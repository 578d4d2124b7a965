// Computes TIP-1034 (session v2) vectors with the reference SDK (mppx), for the Python tests
// to compare against byte for byte. Reads one JSON request on stdin, writes one JSON answer.
//
// request: {
//   cases:   [{payer, payee, operator, token, salt, authorizedSigner, expiringNonceHash,
//              chainId, escrow, amount, key}],            -> channel id, digest, signature
//   verify:  [{escrow, chainId, channelId, amount, signature, signer}],  -> SDK verdicts
//   nonces:  [{chainId, to, data, validBefore, sender, feePayer}]  -> signing payload + hash
//   calls:   [{functionName, args}]  -> reserve calldata (amounts as "123n" strings)
// }
// The SDK is used only through its public entry points (mppx/tempo, viem, ox).
import { Session } from "mppx/tempo";
import { createClient, custom, encodeFunctionData, hashTypedData } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { Channel as OxChannel, TxEnvelopeTempo } from "ox/tempo";

const { Channel, Voucher, escrowAbi } = Session.Precompile;

// Signing typed data with a local account needs no node; fail loudly if anything asks one.
const client = createClient({
  transport: custom({
    request: async ({ method }) => {
      throw new Error(`v2_vectors: unexpected RPC ${method}`);
    },
  }),
});

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function runCase(c) {
  const descriptor = {
    payer: c.payer,
    payee: c.payee,
    operator: c.operator,
    token: c.token,
    salt: c.salt,
    authorizedSigner: c.authorizedSigner,
    expiringNonceHash: c.expiringNonceHash,
  };
  const channelId = Channel.computeId({ ...descriptor, chainId: c.chainId, escrow: c.escrow });
  const cumulativeAmount = BigInt(c.amount);
  const digest = hashTypedData({
    domain: Voucher.getVoucherDomain(c.escrow, c.chainId),
    types: Voucher.voucherTypes,
    primaryType: "Voucher",
    message: { channelId, cumulativeAmount },
  });
  const account = privateKeyToAccount(c.key);
  const signature = await Voucher.signVoucher(
    client,
    account,
    { channelId, cumulativeAmount },
    c.escrow,
    c.chainId,
  );
  const out = { channelId, digest, signature, signer: account.address };
  if (c.escrow.toLowerCase() === OxChannel.address) {
    // The canonical reserve also has ox's dedicated helpers; they must agree with the above.
    out.oxChannelId = OxChannel.computeId(descriptor, { chainId: c.chainId });
    out.oxDigest = OxChannel.getVoucherSignPayload({
      chainId: c.chainId,
      channelId,
      cumulativeAmount,
    });
    out.oxDomainSeparator = OxChannel.domainSeparator({ chainId: c.chainId });
  }
  return out;
}

function runVerify(v) {
  return Voucher.verifyVoucher(
    v.escrow,
    v.chainId,
    { channelId: v.channelId, cumulativeAmount: BigInt(v.amount), signature: v.signature },
    v.signer,
  );
}

function runNonce(n) {
  const transaction = {
    type: "tempo",
    chainId: n.chainId,
    calls: [{ to: n.to, data: n.data, value: 0n }],
    gas: 1_000_000n,
    maxFeePerGas: 20_000_000_000n,
    maxPriorityFeePerGas: 1n,
    nonceKey: (1n << 256n) - 1n,
    nonce: 0,
    validBefore: n.validBefore,
    ...(n.feePayer ? { feePayerSignature: null } : { feeToken: n.feeToken }),
  };
  return {
    signingPayload: TxEnvelopeTempo.encodeForSigning(transaction),
    expiringNonceHash: Channel.computeExpiringNonceHash(transaction, { sender: n.sender }),
  };
}

function runCall(call) {
  const revive = (value) =>
    typeof value === "string" && /^[0-9]+n$/.test(value) ? BigInt(value.slice(0, -1)) : value;
  const args = call.args.map((arg) =>
    arg !== null && typeof arg === "object"
      ? Object.fromEntries(Object.entries(arg).map(([k, v]) => [k, revive(v)]))
      : revive(arg),
  );
  return encodeFunctionData({ abi: escrowAbi, functionName: call.functionName, args });
}

const request = await readStdin();
const answer = {
  cases: [],
  verify: (request.verify ?? []).map(runVerify),
  nonces: (request.nonces ?? []).map(runNonce),
  calls: (request.calls ?? []).map(runCall),
  abi: escrowAbi,
  closeGracePeriod: OxChannel.closeGracePeriod.toString(),
  reserveAddress: OxChannel.address,
};
for (const c of request.cases ?? []) answer.cases.push(await runCase(c));
process.stdout.write(JSON.stringify(answer));
