// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title TestToken
/// @notice "Test USD" (tUSD), a 6-decimal ERC-20 standing in for a TIP-20 stablecoin on local
///         development chains (anvil) and in tests.
/// @dev DEV CHAINS ONLY. `mint` is open: anyone can create any amount for anyone, so the token
///      has no value by construction. Never deploy it where its balances could be mistaken for
///      real money.
contract TestToken is ERC20 {
    constructor() ERC20("Test USD", "tUSD") {}

    /// @notice 6 decimals, like the USD stablecoins the MPP drafts price in.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    /// @notice Mints `amount` base units to `to`. Callable by anyone (dev chains only).
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
