// Shared by the Tempo drivers: the JSON input on stdin, and a viem client for the
// Tempo devchain (anvil T4) at input.rpcUrl / input.chainId signing as input.privateKey.
import { createClient, encodeFunctionData, http } from 'viem'
import { prepareTransactionRequest } from 'viem/actions'
import { Abis } from 'viem/tempo'
import { tempoLocalnet } from 'viem/chains'
import { privateKeyToAccount } from 'viem/accounts'

export async function readInput() {
  return JSON.parse(await new Promise((resolve) => {
    let text = ''
    process.stdin.on('data', (chunk) => { text += chunk })
    process.stdin.on('end', () => resolve(text))
  }))
}

export function tempoClient(input) {
  const chain = {
    ...tempoLocalnet,
    id: Number(input.chainId),
    hardfork: 't4',
    rpcUrls: { default: { http: [input.rpcUrl] } },
  }
  const account = privateKeyToAccount(input.privateKey)
  return { account, client: createClient({ account, chain, transport: http(input.rpcUrl) }) }
}

// The deployed v1 escrow's ABI as the SDK ships it (not in the package's exports map).
export const legacySession = new URL('../../../node_modules/mppx/dist/tempo/legacy/session/', import.meta.url)
const { escrowAbi } = await import(new URL('escrow.abi.js', legacySession).href)

// Prepare the open the way the SDK's legacy client builds it: approve + open in one 0x76,
// fee token = the currency, expiring nonce valid 25 s. Without `gas`, viem estimates it.
export async function prepareOpen(client, account, { escrow, payee, currency, deposit, salt, signer, gas }) {
  return prepareTransactionRequest(client, {
    account,
    calls: [
      { to: currency, data: encodeFunctionData({ abi: Abis.tip20, functionName: 'approve', args: [escrow, deposit] }) },
      { to: escrow, data: encodeFunctionData({ abi: escrowAbi, functionName: 'open', args: [payee, currency, deposit, salt, signer] }) },
    ],
    feeToken: currency,
    nonceKey: 'expiring',
    validBefore: Math.floor(Date.now() / 1000) + 25,
    ...(gas === undefined ? {} : { gas }),
  })
}
