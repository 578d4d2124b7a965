// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice A voucher's EIP-712 digest from first principles, independent of the contracts under
///         test, so tests can sign for any domain (v1 escrow, v2 reserve, or a wrong one).
/// @param voucherType e.g. "Voucher(bytes32 channelId,uint96 cumulativeAmount)"; the amount is
///        ABI-encoded as one word whatever its uint width, so `amount` is a uint256 here.
function voucherDigest(
    string memory voucherType,
    string memory name,
    string memory version,
    address verifyingContract,
    uint256 chainId,
    bytes32 channelId,
    uint256 amount
) pure returns (bytes32) {
    bytes32 domain = keccak256(
        abi.encode(
            keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
            keccak256(bytes(name)),
            keccak256(bytes(version)),
            chainId,
            verifyingContract
        )
    );
    bytes32 structHash = keccak256(abi.encode(keccak256(bytes(voucherType)), channelId, amount));
    return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
}
