// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {ChannelTestBase} from "./utils/ChannelTestBase.sol";
import {TempoStreamChannel} from "../src/TempoStreamChannel.sol";

/// @dev A hostile token: while armed, every transfer out of the escrow first calls back into the
///      escrow with `reentryCall` and records what that call returned.
contract ReenteringToken is ERC20 {
    address public target;
    bytes public reentryCall;
    bool public attempted;
    bytes public reentryResult;

    constructor() ERC20("Hostile", "HOST") {}

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function arm(address target_, bytes calldata call_) external {
        target = target_;
        reentryCall = call_;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        if (target != address(0) && msg.sender == target && !attempted) {
            attempted = true;
            (bool ok, bytes memory result) = target.call(reentryCall);
            require(!ok, "reentrant call succeeded");
            reentryResult = result;
        }
        return super.transfer(to, amount);
    }
}

contract ReentrancyTest is ChannelTestBase {
    function test_reentryDuringPayout_isBlockedByGuard() public {
        ReenteringToken hostile = new ReenteringToken();
        hostile.mint(payer, DEPOSIT);
        vm.prank(payer);
        hostile.approve(address(escrow), DEPOSIT);
        vm.prank(payer);
        bytes32 cid = escrow.open(payee, address(hostile), DEPOSIT, SALT, address(0));

        hostile.arm(address(escrow), abi.encodeCall(TempoStreamChannel.withdraw, (cid)));
        bytes memory sig = _sign(PAYER_KEY, cid, 1_000);
        vm.prank(payee);
        escrow.settle(cid, 1_000, sig);

        assertTrue(hostile.attempted(), "the token tried to re-enter");
        assertEq(
            keccak256(hostile.reentryResult()),
            keccak256(abi.encodeWithSelector(ReentrancyGuard.ReentrancyGuardReentrantCall.selector)),
            "re-entry stopped by the guard"
        );
        assertEq(hostile.balanceOf(payee), 1_000, "outer settle completed");
        assertEq(_channel(cid).settled, 1_000, "state written before the transfer");
    }
}
