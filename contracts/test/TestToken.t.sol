// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {TestToken} from "../src/TestToken.sol";

contract TestTokenTest is Test {
    function test_metadata() public {
        TestToken t = new TestToken();
        assertEq(t.name(), "Test USD", "name");
        assertEq(t.symbol(), "tUSD", "symbol");
        assertEq(t.decimals(), 6, "decimals");
        assertEq(t.totalSupply(), 0, "supply");
    }

    function test_anyoneCanMint() public {
        TestToken t = new TestToken();
        address someone = address(0x1234);
        vm.prank(someone);
        t.mint(address(0x5678), 42_000_000);
        assertEq(t.balanceOf(address(0x5678)), 42_000_000, "balance");
        assertEq(t.totalSupply(), 42_000_000, "supply");
    }
}
