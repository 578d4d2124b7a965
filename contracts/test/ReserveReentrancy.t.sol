// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ReserveTestBase} from "./utils/ReserveTestBase.sol";
import {ITIP20ChannelReserve} from "../src/ITIP20ChannelReserve.sol";

/// @dev A hostile token: on the first transfer out of the reserve it calls back into the reserve
///      with `reentryCall` and records the revert data.
contract CallbackToken is ERC20 {
    address public target;
    bytes public reentryCall;
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
        if (msg.sender == target && reentryResult.length == 0) {
            (bool ok, bytes memory result) = target.call(reentryCall);
            require(!ok, "re-entry succeeded");
            reentryResult = result;
        }
        return super.transfer(to, amount);
    }
}

/// @notice A token that calls back during a payout cannot re-enter the reserve (no
///         constructor ran: the guard lives in transient storage, so it works after `etch`).
/// forge-config: default.isolate = true
contract ReserveReentrancyTest is ReserveTestBase {
    function test_reentryDuringSettlePayout_isBlocked() public {
        CallbackToken hostile = new CallbackToken();
        hostile.mint(payer, DEPOSIT);
        vm.prank(payer);
        hostile.approve(RESERVE, DEPOSIT);
        bytes32 h = keccak256("tx");
        _seed(payer, h);
        vmr.prank(payer, payer);
        bytes32 cid = reserve.open(payee, address(0), address(hostile), DEPOSIT, SALT, address(0));
        ITIP20ChannelReserve.ChannelDescriptor memory d = ITIP20ChannelReserve.ChannelDescriptor(
            payer, payee, address(0), address(hostile), SALT, address(0), h
        );

        bytes memory sig = _sign(PAYER_KEY, cid, 1_000);
        hostile.arm(RESERVE, abi.encodeCall(ITIP20ChannelReserve.settle, (d, 1_000, sig)));
        vm.prank(payee);
        reserve.settle(d, 1_000, sig);

        assertEq(
            keccak256(hostile.reentryResult()),
            keccak256(abi.encodeWithSelector(ReentrancyGuardTransient.ReentrancyGuardReentrantCall.selector)),
            "re-entry stopped by the guard"
        );
        assertEq(hostile.balanceOf(payee), 1_000, "paid once");
    }
}
