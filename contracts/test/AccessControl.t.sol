// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ChannelTestBase} from "./utils/ChannelTestBase.sol";
import {ITempoStreamChannel} from "../src/ITempoStreamChannel.sol";

/// @notice The draft's access-control table, row by row, with each function called by the payer,
///         the payee and a stranger; plus unknown and finalized channels for every mutator.
contract AccessControlTest is ChannelTestBase {
    bytes32 internal id;

    function setUp() public override {
        super.setUp();
        id = _open();
    }

    // ------------------------------------------------------------------ open: anyone

    function test_open_callableByAnyone_callerBecomesPayer() public {
        address[3] memory callers = [payer, payee, stranger];
        for (uint256 i = 0; i < callers.length; ++i) {
            bytes32 salt = keccak256(abi.encode("anyone", i));
            vm.prank(callers[i]);
            bytes32 cid = escrow.open(payee, address(token), 1_000, salt, address(0));
            assertEq(_channel(cid).payer, callers[i], "payer is the caller");
            assertEq(cid, escrow.computeChannelId(callers[i], payee, address(token), salt, address(0)), "channel id");
        }
    }

    // ------------------------------------------------------------------ settle: payee only

    function test_settle_byPayee() public {
        _settle(id, 1_000);
        assertEq(_channel(id).settled, 1_000, "settled");
    }

    function test_settle_byPayer_reverts() public {
        bytes memory sig = _sign(PAYER_KEY, id, 1_000);
        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.NotPayee.selector);
        escrow.settle(id, 1_000, sig);
    }

    function test_settle_byStranger_reverts() public {
        bytes memory sig = _sign(PAYER_KEY, id, 1_000);
        vm.prank(stranger);
        vm.expectRevert(ITempoStreamChannel.NotPayee.selector);
        escrow.settle(id, 1_000, sig);
    }

    // ------------------------------------------------------------------ topUp: payer only

    function test_topUp_byPayer() public {
        vm.prank(payer);
        escrow.topUp(id, 5);
        assertEq(_channel(id).deposit, DEPOSIT + 5, "deposit");
    }

    function test_topUp_byPayee_reverts() public {
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.topUp(id, 5);
    }

    function test_topUp_byStranger_reverts() public {
        vm.prank(stranger);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.topUp(id, 5);
    }

    // ------------------------------------------------------------------ close: payee only

    function test_close_byPayee() public {
        bytes memory sig = _sign(PAYER_KEY, id, 1_000);
        vm.prank(payee);
        escrow.close(id, 1_000, sig);
        assertTrue(_channel(id).finalized, "finalized");
    }

    function test_close_byPayer_reverts() public {
        bytes memory sig = _sign(PAYER_KEY, id, 1_000);
        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.NotPayee.selector);
        escrow.close(id, 1_000, sig);
    }

    function test_close_byStranger_reverts() public {
        bytes memory sig = _sign(PAYER_KEY, id, 1_000);
        vm.prank(stranger);
        vm.expectRevert(ITempoStreamChannel.NotPayee.selector);
        escrow.close(id, 1_000, sig);
    }

    // ------------------------------------------------------------------ requestClose: payer only

    function test_requestClose_byPayer() public {
        _requestClose(id);
        assertEq(_channel(id).closeRequestedAt, block.timestamp, "closeRequestedAt");
    }

    function test_requestClose_byPayee_reverts() public {
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.requestClose(id);
    }

    function test_requestClose_byStranger_reverts() public {
        vm.prank(stranger);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.requestClose(id);
    }

    // ------------------------------------------------------------------ withdraw: payer only

    function test_withdraw_byPayer() public {
        _requestClose(id);
        vm.warp(block.timestamp + escrow.CLOSE_GRACE_PERIOD());
        vm.prank(payer);
        escrow.withdraw(id);
        assertTrue(_channel(id).finalized, "finalized");
    }

    function test_withdraw_byPayee_reverts() public {
        _requestClose(id);
        vm.warp(block.timestamp + escrow.CLOSE_GRACE_PERIOD());
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.withdraw(id);
    }

    function test_withdraw_byStranger_reverts() public {
        _requestClose(id);
        vm.warp(block.timestamp + escrow.CLOSE_GRACE_PERIOD());
        vm.prank(stranger);
        vm.expectRevert(ITempoStreamChannel.NotPayer.selector);
        escrow.withdraw(id);
    }

    // ------------------------------------------------------------------ unknown channel

    function test_unknownChannel_everyMutatorReverts() public {
        bytes32 unknown = keccak256("no such channel");
        bytes memory sig = _sign(PAYER_KEY, unknown, 1);

        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.ChannelNotFound.selector);
        escrow.settle(unknown, 1, sig);

        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.ChannelNotFound.selector);
        escrow.topUp(unknown, 1);

        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.ChannelNotFound.selector);
        escrow.close(unknown, 1, sig);

        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.ChannelNotFound.selector);
        escrow.requestClose(unknown);

        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.ChannelNotFound.selector);
        escrow.withdraw(unknown);
    }

    function test_unknownChannel_getChannelIsZeroed() public view {
        ITempoStreamChannel.Channel memory c = _channel(keccak256("no such channel"));
        assertEq(c.payer, address(0), "payer");
        assertEq(c.deposit, 0, "deposit");
        assertFalse(c.finalized, "finalized");
    }

    // ------------------------------------------------------------------ finalized channel

    function test_finalizedChannel_everyMutatorReverts_forEveryCaller() public {
        bytes32 fid = _finalizedChannel();
        bytes memory sig = _sign(PAYER_KEY, fid, 1);
        address[3] memory callers = [payer, payee, stranger];
        for (uint256 i = 0; i < callers.length; ++i) {
            vm.startPrank(callers[i]);

            vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
            escrow.settle(fid, 1, sig);

            vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
            escrow.topUp(fid, 1);

            vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
            escrow.close(fid, 1, sig);

            vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
            escrow.requestClose(fid);

            vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
            escrow.withdraw(fid);

            vm.stopPrank();
        }
    }

    function test_withdrawnChannel_isFinalizedToo() public {
        _requestClose(id);
        vm.warp(block.timestamp + escrow.CLOSE_GRACE_PERIOD());
        vm.prank(payer);
        escrow.withdraw(id);

        vm.prank(payer);
        vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
        escrow.withdraw(id);

        bytes memory sig = _sign(PAYER_KEY, id, 1);
        vm.prank(payee);
        vm.expectRevert(ITempoStreamChannel.ChannelFinalized.selector);
        escrow.settle(id, 1, sig);
    }
}
